import type { Command } from 'commander';
import { examples } from './pki/common.ts';

interface Opts {
  config: string;
}

export function register(program: Command): void {
  program
    .command('serve')
    .summary('run the broker: mTLS listener, identity → roles → ACL → proxy')
    .description('Start the broker with a config file (YAML or JSON). It refuses to start on any config or certificate problem, listing them all. SIGTERM or SIGINT stops it.')
    .requiredOption('-c, --config <file>', 'config file', 'broker.yaml')
    .addHelpText('after', examples('broker serve --config broker.yaml', 'broker config check --config broker.yaml && broker serve -c broker.yaml'))
    .action(async (opts: Opts) => {
      const [{ loadConfig }, { buildBroker }] = await Promise.all([import('../config/index.ts'), import('../server.ts')]);
      const { config } = loadConfig(opts.config);
      const broker = await buildBroker(config);
      let addr: { host: string; port: number };
      try {
        addr = await broker.listen();
      } catch (cause) {
        const { BrokerError } = await import('../errors.ts');
        await broker.close().catch(() => {});
        throw new BrokerError('BRK_ERR_LISTEN', `cannot listen on ${config.listen.host}:${config.listen.port}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause });
      }
      broker.loggers.error.info({ event: 'listening', host: addr.host, port: addr.port, routes: config.routes.map((r) => r.name) }, `broker listening on https://${addr.host}:${addr.port}`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          broker.loggers.error.info({ event: 'shutdown', signal }, 'shutting down');
          broker.close().finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
