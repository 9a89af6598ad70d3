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
import sonicBoom from 'sonic-boom';

const { SonicBoom } = sonicBoom;
type Output = InstanceType<typeof SonicBoom>;

/** Outputs still open, flushed synchronously when the process exits (as pino does for its own). */
const live = new Set<WeakRef<Output>>();
process.once('exit', () => {
  for (const ref of live) {
    try {
      ref.deref()?.flushSync();
    } catch {
      // closed, or never opened: nothing to write
    }
  }
});

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
  /** File outputs: bytes collected before a write (0: line by line), flushed every flushMs. */
  bufferBytes?: number;
  flushMs?: number;
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

/**
 * An asynchronous output (sonic-boom) fed with Buffers. In its default string mode sonic-boom
 * appends each line to the pending string and measures the result, which flattens it: lines that
 * pile up while a write is in flight cost a copy of everything pending each, the largest allocation
 * of the whole request path (about a quarter of its bytes, and the young-generation GC pauses
 * behind the p99). Buffer mode keeps a list and concatenates once per write.
 */
function output(dest: string | number, o: { bufferBytes: number; flushMs: number }): Dest {
  const file = typeof dest === 'string';
  const buffered = file && o.bufferBytes > 0;
  const sonic = new SonicBoom({
    dest,
    sync: false,
    contentMode: 'buffer',
    ...(file ? { mkdir: true } : {}),
    // Buffered file outputs (as nginx's access_log buffer=… flush=…): one write per buffer instead
    // of one per line, each a thread-pool round trip; the periodic flush bounds how stale a file is.
    ...(buffered ? { minLength: o.bufferBytes, maxWrite: Math.max(16_384, 2 * o.bufferBytes), periodicFlush: o.flushMs } : {}),
  });
  live.add(new WeakRef(sonic));
  const onError = (err: NodeJS.ErrnoException) => {
    // The reader of a pipe went away: stop writing there (as pino does); anything else is raised.
    if (err.code === 'EPIPE') {
      sonic.write = () => true;
      sonic.flushSync = () => {};
      return;
    }
    sonic.off('error', onError);
    sonic.emit('error', err);
  };
  sonic.on('error', onError);
  return {
    // sonic-boom's buffer mode takes Buffers (its types say string)
    write: (line: string) => sonic.write(Buffer.from(line) as unknown as string),
    reopen: () => sonic.reopen(),
    flushSync: () => sonic.flushSync(),
  };
}

export function createLoggers(o: LogConfig & { stdout?: DestinationStream; stderr?: DestinationStream }): Loggers {
  // Redaction only where arbitrary objects are logged (errors); the auth, access and audit lines are
  // built from chosen fields, and redaction on every access line cost ~3% of the request path.
  const base = { level: o.level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  const redacted = { ...base, redact: { paths: REDACT, censor: '[redacted]' } };
  const dests = new Map<string, Dest>();
  const outOpts = { bufferBytes: o.bufferBytes ?? 0, flushMs: o.flushMs ?? 1_000 };
  const dest = (target: LogTarget): Dest | undefined => {
    if (target === 'off') return undefined;
    let d = dests.get(target);
    if (!d) {
      if (target === 'stdout') d = (o.stdout as Dest) ?? output(1, outOpts);
      else if (target === 'stderr') d = (o.stderr as Dest) ?? output(2, outOpts);
      else d = output(target, outOpts);
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
