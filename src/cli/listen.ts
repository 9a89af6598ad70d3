import type { BrokerConfig } from '../config/index.ts';
import { BrokerError } from '../errors.ts';

type Address = { host: string; port: number; adminPort?: number; optionalPort?: number; forwardPort?: number };

/**
 * Binds the broker's listeners; when one cannot be bound, closes what was opened (so nothing keeps
 * the process alive) and throws BRK_ERR_LISTEN naming the listener and its address.
 */
export async function listenOrExplain(broker: { listen(): Promise<Address>; close(): Promise<unknown> }, config: BrokerConfig, hint?: string): Promise<Address> {
  try {
    return await broker.listen();
  } catch (cause) {
    await broker.close().catch(() => {});
    const c = cause as { admin?: boolean; optional?: boolean; forward?: boolean };
    const where = c.admin
      ? `the admin listener ${config.admin.host}:${config.admin.port}`
      : c.forward && config.forward
        ? `the forward listener ${config.forward.listen.host}:${config.forward.listen.port}`
        : c.optional && config.listenCertOptional
          ? `the certificate-optional listener ${config.listenCertOptional.host}:${config.listenCertOptional.port}`
          : `${config.listen.host}:${config.listen.port}`;
    throw new BrokerError('BRK_ERR_LISTEN', `cannot listen on ${where}: ${(cause as NodeJS.ErrnoException).code ?? cause}`, { cause, ...(hint ? { hint } : {}) });
  }
}
