/**
 * The command tree. Each leaf lives in its own file and imports its heavy modules lazily inside
 * its action, so `broker --help` stays instant.
 */
import { Command, CommanderError } from 'commander';
import { BrokerError } from '../errors.ts';
import { register as pkiInit } from './pki/init.ts';
import { register as pkiIssue } from './pki/issue.ts';
import { register as pkiServer } from './pki/server.ts';
import { register as pkiSign } from './pki/sign.ts';
import { register as pkiRevoke } from './pki/revoke.ts';
import { register as pkiCrl } from './pki/crl.ts';
import { register as pkiRenew } from './pki/renew.ts';
import { register as pkiList } from './pki/list.ts';
import { register as pkiInspect } from './pki/inspect.ts';
import { register as pkiAudit } from './pki/audit.ts';
import { register as pkiRotate } from './pki/rotate.ts';
import { register as pkiReadiness } from './pki/readiness.ts';
import { register as pkiInvite } from './pki/invite.ts';
import { register as pkiRoot } from './pki/root.ts';
import { register as keysCreate } from './keys/create.ts';
import { register as keysList } from './keys/list.ts';
import { register as keysRevoke } from './keys/revoke.ts';
import { register as demo } from './demo.ts';
import { register as serve } from './serve.ts';
import { register as configCheck } from './config-check.ts';
import { register as usage } from './usage.ts';
import { register as connect } from './connect.ts';
import { register as doctor } from './doctor.ts';
import { register as enroll } from './enroll.ts';
import { register as renew } from './renew.ts';

export const VERSION = '0.1.0';

export function buildProgram(): Command {
  const program = new Command('broker')
    .description('A TLS-terminating reverse access broker with mutual TLS and its own CA.')
    .version(VERSION, '-V, --version')
    .configureOutput({ outputError: () => {} });
  const pki = program.command('pki').summary('the built-in certificate authority').description('Manage the broker\'s CA: identities, server certificates, revocation, CRLs and the audit log.');
  for (const register of [pkiInit, pkiIssue, pkiServer, pkiSign, pkiRevoke, pkiCrl, pkiRenew, pkiList, pkiInspect, pkiAudit, pkiRotate, pkiReadiness, pkiInvite, pkiRoot]) register(pki);
  const keys = program.command('keys').summary('API keys and Basic credentials').description('Manage the API keys and HTTP Basic credentials partners may present instead of (or with) a client certificate. They live in keys.json of the CA store, as salted scrypt hashes.');
  for (const register of [keysCreate, keysList, keysRevoke]) register(keys);
  serve(program);
  configCheck(program);
  usage(program);
  connect(program);
  enroll(program);
  renew(program);
  doctor(program);
  demo(program);
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

/** Runs the CLI and returns the exit code; never exits the process itself. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      if (err.code === 'commander.executeSubCommandAsync' || err.exitCode === 0) return 0;
      const message = err.message.replace(/^error: /, '');
      throw new BrokerError('BRK_ERR_USAGE', message);
    }
    throw err;
  }
}
