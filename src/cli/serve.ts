import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  config: string;
  workers?: string;
}

/** Runs one serving process until SIGTERM/SIGINT. */
async function serveOne(file: string, inWorker: boolean): Promise<void> {
  // First thing: a worker answers the primary's metrics collection even while it starts.
  const metrics = inWorker ? (await import('../observability/cluster-metrics.ts')).workerMetrics() : undefined;
  const [{ loadConfig }, { buildBroker }, { BrokerError }, { listenOrExplain }] = await Promise.all([import('../config/index.ts'), import('../server.ts'), import('../errors.ts'), import('./listen.ts')]);
  const { config } = loadConfig(file);
  let store;
  if (inWorker && config.rateLimit.store === 'memory') {
    const { IpcStore } = await import('../ratelimit/ipc-store.ts');
    store = new IpcStore();
  }
  const broker = await buildBroker(config, { ...(store ? { store } : {}), ...(metrics ? { metrics } : {}), reloadSource: () => loadConfig(file).config });
  const addr = await listenOrExplain(broker, config);
  // Bound (a low port needs root or CAP_NET_BIND_SERVICE): now give up root, before any request.
  if (config.user && process.getuid?.() === 0) {
    try {
      process.setgid?.(config.group ?? config.user);
      process.setuid?.(config.user);
    } catch (cause) {
      await broker.close().catch(() => {});
      throw new BrokerError('BRK_ERR_LISTEN', `cannot switch to user ${config.user}${config.group ? `, group ${config.group}` : ''}: ${(cause as Error).message}`, { cause, hint: 'create the user and group, or remove user/group from the config' });
    }
    broker.loggers.audit.info({ event: 'privileges', user: config.user, group: config.group ?? config.user, uid: process.getuid?.(), gid: process.getgid?.() }, 'switched to an unprivileged user after binding');
  }
  // logrotate: move the files, then SIGUSR2 makes the broker write to new ones
  const reopen = () => broker.loggers.reopen();
  process.on('SIGUSR2', reopen);
  const hup = () => void broker.reload(undefined, 'SIGHUP');
  process.on('SIGHUP', hup);
  const { watchFiles } = await import('../tls/watch.ts');
  const { materialFiles } = await import('../tls/material.ts');
  const { keysFile } = await import('../auth/index.ts');
  const { storeLayout } = await import('../pki/layout.ts');
  const { settingsOf } = await import('../config/compile.ts');
  const { resolve } = await import('node:path');
  const watcher = config.reload.watch
    ? watchFiles([resolve(file), ...Object.values(materialFiles(config)), keysFile(config), storeLayout(config.pki.dir).assertionKeys], settingsOf(config).reloadDebounceMs, (what) => void broker.reload(undefined, `file change: ${what}`))
    : undefined;
  const graceMs = settingsOf(config).timeouts.shutdown;
  await new Promise<void>((done) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: the operator does not want to wait. Exit now, as `kill -9` would, but said.
        broker.loggers.error.warn({ event: 'shutdown', signal, pid: process.pid }, 'second signal: exiting at once');
        broker.loggers.flush();
        process.exit(1);
      }
      stopping = true;
      broker.loggers.error.info({ event: 'shutdown', signal, pid: process.pid, graceMs }, 'shutting down: no new connections; running requests may finish');
      watcher?.close();
      broker.close(graceMs).finally(() => {
        process.off('SIGUSR2', reopen);
        process.off('SIGHUP', hup);
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        // A worker's IPC channel keeps it alive: let go of it so the process can end.
        if (inWorker && process.connected) process.disconnect();
        done();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // Said only now that the signal handlers and the file watcher are in place: whoever waits for
    // this line may signal the process or edit its files at once.
    broker.loggers.error.info(
      { event: 'listening', host: addr.host, port: addr.port, optionalPort: addr.optionalPort ?? null, forwardPort: addr.forwardPort ?? null, adminPort: addr.adminPort ?? null, routes: config.routes.map((r) => r.name), pid: process.pid, store: broker.store.kind },
      `broker listening on https://${addr.host}:${addr.port}${addr.optionalPort !== undefined ? ` (client certificate optional on port ${addr.optionalPort})` : ''}${addr.forwardPort !== undefined ? `, forward proxy on port ${addr.forwardPort}` : ''}${addr.adminPort !== undefined ? `, admin on http://${config.admin.host}:${addr.adminPort}` : ''}`,
    );
  });
}

/**
 * The primary of a multi-process broker: forks the workers (which share the listening socket),
 * holds the memory store they all use, relays SIGTERM/SIGINT, and returns when they have exited.
 */
async function servePrimary(file: string, workers: number): Promise<void> {
  const [{ default: cluster }, { loadConfig }, { MemoryStore }, ipc, { servePrimaryMetrics }] = await Promise.all([
    import('node:cluster'),
    import('../config/index.ts'),
    import('../ratelimit/memory-store.ts'),
    import('../ratelimit/ipc-store.ts'),
    import('../observability/cluster-metrics.ts'),
  ]);
  const { config } = loadConfig(file); // fail fast, once, before forking
  const store = new MemoryStore();
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is NonNullable<typeof w> => w !== undefined);
  ipc.broadcastBans(store, live);
  servePrimaryMetrics(cluster);
  cluster.setupPrimary({ args: process.argv.slice(2) });
  let stopping = false;
  const fork = () => {
    const w = cluster.fork({ BROKER_WORKER: '1' });
    if (config.rateLimit.store === 'memory') ipc.serveStore(store, w);
    return w;
  };
  for (let i = 0; i < workers; i++) fork();
  await new Promise<void>((resolve) => {
    cluster.on('exit', (w, code, signal) => {
      if (!stopping && code !== 0) {
        process.stderr.write(`worker ${w.process.pid} exited (${signal ?? code}); starting another\n`);
        fork();
        return;
      }
      if (live().length === 0) resolve();
    });
    const stop = (signal: NodeJS.Signals) => {
      stopping = true;
      for (const w of live()) w.process.kill(signal);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // reload and log reopening are the workers' business: pass the signals on (Node's default
    // for them would end the primary, and with it every worker)
    const relay = (signal: NodeJS.Signals) => () => {
      for (const w of live()) w.process.kill(signal);
    };
    process.on('SIGHUP', relay('SIGHUP'));
    process.on('SIGUSR2', relay('SIGUSR2'));
  });
  await store.close();
}

export function register(program: Command): void {
  program
    .command('serve')
    .summary('run the broker: mTLS listener, identity → roles → ACL → proxy')
    .description('Start the broker with a config file (YAML or JSON). It refuses to start on any config or certificate problem, listing them all. With --workers N (or workers: N) N processes share the listener and one set of limits. SIGTERM or SIGINT stops it.')
    .requiredOption('-c, --config <file>', 'config file', 'broker.yaml')
    .option('-w, --workers <n>', 'serving processes (overrides "workers" in the config)')
    .addHelpText('after', examples('broker serve --config broker.yaml', 'broker serve -c broker.yaml --workers 2'))
    .action(async (opts: Opts) => {
      const { default: cluster } = await import('node:cluster');
      if (process.env.BROKER_WORKER === '1' && cluster.isWorker) return serveOne(opts.config, true);
      let workers: number;
      if (opts.workers !== undefined) {
        workers = Number(opts.workers);
        if (!Number.isInteger(workers) || workers < 1 || workers > 256) {
          const { BrokerError } = await import('../errors.ts');
          throw new BrokerError('BRK_ERR_USAGE', `--workers ${opts.workers} is not a whole number from 1 to 256`);
        }
      } else {
        const { loadConfig } = await import('../config/index.ts');
        workers = loadConfig(opts.config).config.workers;
      }
      return workers > 1 ? servePrimary(opts.config, workers) : serveOne(opts.config, false);
    });
}
