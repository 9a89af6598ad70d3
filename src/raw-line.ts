/**
 * Writing a log line as a string, byte for byte the line pino would write for the same fields, for
 * the lines written on every request or handshake (access, "client authenticated"): building an
 * object per line for pino to serialise was the largest part of their cost. The level, time and
 * bindings strings and the destination come from the pino logger itself. Undefined for a logger set
 * up in a way this does not reproduce (mixin, log formatter, nested key, hooks, serializers or
 * stringifiers on these fields, a stream that wants metadata): the caller lets pino format then.
 */
import { pino, type Logger } from 'pino';

const { lsCacheSym, timeSym, chindingsSym, streamSym, endSym, messageKeySym, mixinSym, formattersSym, hooksSym, nestedKeySym, serializersSym, stringifiersSym, wildcardFirstSym } = pino.symbols;

export interface RawLine {
  /** `{"level":30,"time":…` plus the logger's bindings: what every info line starts with. */
  head(): string;
  /** `,"msg":"…"` for `message` (when given) and the line's end. */
  end(message?: string): string;
  write(line: string): void;
}

export function rawLine(log: Logger, fields: readonly string[]): RawLine | undefined {
  const l = log as unknown as Record<symbol, unknown>;
  const stream = l[streamSym] as { write?(line: string): unknown; [k: symbol]: unknown } | undefined;
  const formatters = l[formattersSym] as { log?: unknown } | undefined;
  const hooks = l[hooksSym] as { streamWrite?: unknown } | undefined;
  const serializers = (l[serializersSym] ?? {}) as Record<string | symbol, unknown>;
  const stringifiers = (l[stringifiersSym] ?? {}) as Record<string | symbol, unknown>;
  const level = (l[lsCacheSym] as Record<number, string> | undefined)?.[30];
  const time = l[timeSym];
  const messageKey = l[messageKeySym];
  const endOfLine = l[endSym];
  if (typeof stream?.write !== 'function' || stream[Symbol.for('pino.metadata')] === true || l[mixinSym] || formatters?.log || hooks?.streamWrite || l[nestedKeySym]) return undefined;
  if (typeof level !== 'string' || typeof time !== 'function' || typeof endOfLine !== 'string' || typeof messageKey !== 'string') return undefined;
  if (stringifiers[wildcardFirstSym] || [...fields, messageKey].some((k) => serializers[k] || stringifiers[k])) return undefined;
  const out = stream as { write(line: string): unknown };
  const now = time as () => string;
  return {
    head: () => `${level}${now()}${l[chindingsSym] as string}`,
    end: (message) => (message === undefined ? endOfLine : `,${JSON.stringify(messageKey)}:${JSON.stringify(message)}${endOfLine}`),
    write: (line) => void out.write(line),
  };
}
