#!/usr/bin/env node
/**
 * The bin entry and the only place that exits the process. It checks the Node version before
 * loading anything that needs Node 24, then runs the CLI and maps errors to exit codes:
 * 0 ok, 1 runtime failure, 2 usage or config error (3 is reserved for `doctor` findings).
 */
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `error BRK_ERR_NODE_VERSION: broker needs Node 24 or later, this is Node ${process.versions.node} ` +
      `(use the installed "broker" command, or "npx broker" / "npm run" in a clone: they run on the Node 24 the package brings; ` +
      `if the installed command got here, reinstall it with install scripts allowed so that Node 24 is set up, or install Node 24)\n`,
  );
  process.exit(1);
}

// `broker pki list | head`: a reader that stops early is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const { run } = await import('./cli/index.ts');
const { BrokerError, formatError } = await import('./errors.ts');

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof BrokerError) {
    process.stderr.write(`${formatError(err)}\n`);
    if (process.env.BROKER_DEBUG && err.cause) process.stderr.write(`cause: ${String((err.cause as Error).stack ?? err.cause)}\n`);
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`error BRK_ERR_INTERNAL: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
