/**
 * The broker's log streams, as pino loggers whose every line carries `log` naming its stream:
 * auth (handshakes), access (one line per request), error (failures, outages, alerts) and audit
 * (reloads, admin actions, bans). Each stream goes to stdout, stderr, a file or nowhere. File
 * outputs are reopened on SIGUSR2, so logrotate can move them without losing lines.
 *
 * Key material, full PEMs, Authorization and Cookie values are never logged: the loggers are only
 * handed chosen fields, and on the error stream pino's redaction covers headers in case an error
 * object carries them.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export interface Loggers {
  auth: Logger;
  access: Logger;
  error: Logger;
  audit: Logger;
  /** The root (for Fastify's own messages). */
  root: Logger;
  /** Reopens file outputs (after logrotate moved them). */
  reopen(): void;
  /** Flushes what is buffered (at shutdown). */
  flush(): void;
}

export type LogTarget = 'stdout' | 'stderr' | 'off' | string;

export interface LogConfig {
  level: string;
  auth?: LogTarget;
  access?: LogTarget;
  error?: LogTarget;
  audit?: LogTarget;
}

export const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'headers.authorization',
  'headers.cookie',
  'err.config',
  '*.key',
  '*.passphrase',
  '*.password',
];

type Dest = DestinationStream & { reopen?: () => void; flushSync?: () => void };

export function createLoggers(o: LogConfig & { stdout?: DestinationStream; stderr?: DestinationStream }): Loggers {
  // Redaction only where arbitrary objects are logged (errors); the auth, access and audit lines are
  // built from chosen fields, and redaction on every access line cost ~3% of the request path.
  const base = { level: o.level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  const redacted = { ...base, redact: { paths: REDACT, censor: '[redacted]' } };
  const dests = new Map<string, Dest>();
  const dest = (target: LogTarget): Dest | undefined => {
    if (target === 'off') return undefined;
    let d = dests.get(target);
    if (!d) {
      if (target === 'stdout') d = (o.stdout as Dest) ?? pino.destination({ dest: 1, sync: false });
      else if (target === 'stderr') d = (o.stderr as Dest) ?? pino.destination({ dest: 2, sync: false });
      else d = pino.destination({ dest: target, sync: false, mkdir: true });
      dests.set(target, d);
    }
    return d;
  };
  const make = (name: string, target: LogTarget, opts: typeof base = base): Logger => {
    const d = dest(target);
    return d ? pino(opts, d).child({ log: name }) : pino({ ...opts, level: 'silent' }).child({ log: name });
  };
  const error = make('error', o.error ?? 'stderr', redacted);
  return {
    auth: make('auth', o.auth ?? 'stdout'),
    access: make('access', o.access ?? 'stdout'),
    error,
    audit: make('audit', o.audit ?? 'stdout'),
    root: error,
    reopen() {
      for (const [target, d] of dests) if (target !== 'stdout' && target !== 'stderr') d.reopen?.();
    },
    flush() {
      for (const d of dests.values()) {
        try {
          d.flushSync?.();
        } catch {
          // not ready yet (async destination still opening): nothing buffered to lose
        }
      }
    },
  };
}
