/**
 * The broker's log streams, as pino loggers whose every line carries `log` naming its stream:
 * auth (handshakes), access (one line per request), error. Key material, full PEMs, Authorization
 * and Cookie values are never logged: the loggers are only handed fixed, chosen fields, and pino's
 * redaction covers headers in case an error object carries them.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export interface Loggers {
  auth: Logger;
  access: Logger;
  error: Logger;
  /** The root (for Fastify's own messages). */
  root: Logger;
}

const REDACT = ['req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]', 'headers.authorization', 'headers.cookie', '*.key', '*.passphrase', '*.password'];

export function createLoggers(o: { level: string; stdout?: DestinationStream; stderr?: DestinationStream }): Loggers {
  const base = { level: o.level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, redact: { paths: REDACT, censor: '[redacted]' } };
  const out = pino(base, o.stdout ?? pino.destination({ dest: 1, sync: false }));
  const err = pino(base, o.stderr ?? pino.destination({ dest: 2, sync: false }));
  return { auth: out.child({ log: 'auth' }), access: out.child({ log: 'access' }), error: err.child({ log: 'error' }), root: err.child({ log: 'error' }) };
}
