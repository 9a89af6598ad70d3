/**
 * Where secrets come from: a file, an environment variable, or a hidden prompt on a terminal.
 * Never from a command-line argument (it would sit in shell history and `ps`).
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BrokerError } from '../errors.ts';

export function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `cannot read the ${what} file ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
  }
  const secret = text.split(/\r?\n/, 1)[0] ?? '';
  if (!secret) throw new BrokerError('BRK_ERR_USAGE_SECRET_FILE', `the ${what} file ${file} is empty`);
  return secret;
}

export function interactive(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

/** Reads one line from the terminal without echoing it. */
export async function promptHidden(question: string): Promise<string> {
  const { stdin, stderr } = process;
  stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(new BrokerError('BRK_ERR_USAGE', 'interrupted'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

async function promptTwice(what: string): Promise<string> {
  const a = await promptHidden(`New ${what}: `);
  if (!a) throw new BrokerError('BRK_ERR_USAGE', `the ${what} cannot be empty`);
  const b = await promptHidden(`Repeat the ${what}: `);
  if (a !== b) throw new BrokerError('BRK_ERR_USAGE', `the two ${what}s differ`);
  return a;
}

export interface SecretSource {
  file?: string | undefined;
  env: string;
  what: string;
}

/** File, then environment, then (on a terminal) a prompt; undefined when none applies. */
export async function resolveSecret(src: SecretSource, o: { confirm?: boolean; prompt?: boolean } = {}): Promise<string | undefined> {
  if (src.file) return readSecretFile(src.file, src.what);
  const fromEnv = process.env[src.env];
  if (fromEnv) return fromEnv;
  if (o.prompt !== false && interactive()) return o.confirm ? promptTwice(src.what) : promptHidden(`${src.what[0]?.toUpperCase()}${src.what.slice(1)}: `);
  return undefined;
}

export function caPassphraseSource(file?: string): SecretSource {
  return { file, env: 'BROKER_CA_PASSPHRASE', what: 'CA passphrase' };
}

/** The root key's own passphrase (a store whose root can be kept offline). */
export function rootPassphraseSource(file?: string): SecretSource {
  return { file, env: 'BROKER_ROOT_CA_PASSPHRASE', what: 'root CA passphrase' };
}

/** A password for hand-over: 24 characters from an unambiguous alphabet (~138 bits). */
export function generatePassword(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const bytes = randomBytes(48);
  let out = '';
  for (const b of bytes) {
    if (b < 228) out += alphabet[b % 57];
    if (out.length === 24) break;
  }
  return out;
}
