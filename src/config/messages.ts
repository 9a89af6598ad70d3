/**
 * Schema errors in words. TypeBox says "Expected string to match '^\d{1,9}(ms|s|m|h|d)$'"; an
 * operator needs "not a duration: like 250ms, 10s, 5m". The words are kept in one map keyed by the
 * schema's patterns, so the schema stays the single source of the patterns themselves; a pattern
 * without words falls back to the setting's description (test/unit/config-messages.test.ts asks
 * that every pattern in the schema has its words).
 */
import { ValueErrorType, type ValueError } from '@sinclair/typebox/value';

const DURATION = 'a duration: a whole number and a unit with no space, like 250ms, 10s, 5m, 12h or 90d';
const SIZE = 'a size: a whole number of bytes, or one with a unit, like 512, 16kb, 1mb or 2gb';

/** Each pattern in src/config/schema.ts, and what it asks for. */
export const PATTERN_WORDS: Readonly<Record<string, string>> = {
  '^\\d{1,9}(ms|s|m|h|d)$': DURATION,
  '^\\d{1,12}\\s*([kKmMgG][bB]|[bB])?$': SIZE,
  '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$': 'a name of 1-64 letters, digits, ".", "_" and "-", starting with a letter or digit',
  '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$': 'a role of 1-64 letters, digits, ".", "_", ":" and "-", starting with a letter or digit',
  '^([0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}$': 'a SHA-256 fingerprint: 32 bytes in hex, colons optional (as "broker pki list" prints it)',
  '^([0-9a-fA-F]{2}:?)+$': 'a serial number in hex: pairs of hex digits, colons optional',
  '^(memory|rediss?://.+)$': 'memory, or a Redis URL like redis://127.0.0.1:6379 (rediss:// for TLS)',
  '^/': 'a path starting with "/", like /orders',
  '^https?://': 'a URL starting with http:// or https://',
  '^[a-z0-9][a-z0-9-]{0,63}$': 'an HTTP header name in lower case: letters, digits and "-", like x-api-key',
  '^[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,64}$': '1-64 printable ASCII characters without quotes (") or backslashes',
  '^[A-Za-z0-9._~-]{1,253}$': 'a host name: letters, digits, ".", "-", "_" and "~" (no port, no path)',
  '^[A-Za-z0-9-]{1,64}$': 'an HTTP header name: letters, digits and "-"',
  '^(\\*\\.)?[A-Za-z0-9_.:-]{1,253}$': 'a host name, "*.suffix" or an IP address',
};

type Schema = Record<string, unknown>;

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null (empty)' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : String(v));

/** What a schema (or the first member of a union that has words) asks for, in words. */
function wanted(schema: Schema): string | undefined {
  if (typeof schema.pattern === 'string') return PATTERN_WORDS[schema.pattern] ?? (typeof schema.description === 'string' ? `text matching: ${schema.description}` : undefined);
  if (Array.isArray(schema.anyOf)) {
    const members = schema.anyOf as Schema[];
    if (members.every((m) => m.const !== undefined)) return `one of ${members.map((m) => String(m.const)).join(', ')}`;
    for (const m of members) {
      const w = wanted(m);
      if (w) return w;
    }
  }
  return undefined;
}

/** Edit distance counting a swap of neighbours as one edit (prot → port), for "did you mean". */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number) => (d[i] as number[])[j] as number;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = v;
    }
  }
  return at(a.length, b.length);
}

/** The closest known name, when it is close enough to be a typo. */
export function didYouMean(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === word.toLowerCase() ? 0 : distance(word, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** One schema error as a sentence. `key` is the last path segment (the unknown key's name). */
export function schemaMessage(e: ValueError, key: string): string {
  const s = e.schema as Schema;
  const asks = wanted(s);
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const known = Object.keys((s.properties as Schema | undefined) ?? {});
      const guess = didYouMean(key, known);
      if (guess) return `unknown key "${key}" (did you mean "${guess}"?)`;
      return known.length && known.length <= 16 ? `unknown key "${key}" (known here: ${known.join(', ')})` : `unknown key "${key}"`;
    }
    case ValueErrorType.ObjectRequiredProperty:
      return `missing: this setting is required${typeof s.description === 'string' ? ` (${s.description})` : ''}`;
    case ValueErrorType.StringPattern:
      return asks ? `${show(e.value)} is not ${asks}` : `${show(e.value)} does not have the expected form`;
    case ValueErrorType.Union:
      if (asks) {
        const guess = typeof e.value === 'string' && asks.startsWith('one of ') ? didYouMean(e.value, asks.slice(7).split(', ')) : undefined;
        return `${show(e.value)} is not ${asks}${guess ? ` (did you mean ${guess}?)` : ''}`;
      }
      return `${show(e.value)} is not an accepted value`;
    case ValueErrorType.String:
      return asks ? `${show(e.value)} is not ${asks}` : `expected text, got ${show(e.value)}`;
    case ValueErrorType.Integer:
      return `expected a whole number, got ${show(e.value)}`;
    case ValueErrorType.Number:
      return `expected a number, got ${show(e.value)}`;
    case ValueErrorType.Boolean:
      return `expected true or false, got ${show(e.value)}`;
    case ValueErrorType.Array:
      return `expected a list, got ${show(e.value)}`;
    case ValueErrorType.Object:
      return `expected a mapping of settings, got ${show(e.value)}`;
    case ValueErrorType.NumberMinimum:
    case ValueErrorType.IntegerMinimum:
      return `${show(e.value)} is too small: the least is ${String(s.minimum)}`;
    case ValueErrorType.NumberMaximum:
    case ValueErrorType.IntegerMaximum:
      return `${show(e.value)} is too large: the most is ${String(s.maximum)}`;
    case ValueErrorType.ArrayMinItems:
      return `list at least ${String(s.minItems)} entr${s.minItems === 1 ? 'y' : 'ies'}`;
    case ValueErrorType.ArrayMaxItems:
      return `list at most ${String(s.maxItems)} entries`;
    case ValueErrorType.ArrayUniqueItems:
      return 'an entry is listed twice';
    case ValueErrorType.StringMinLength:
      return 'must not be empty';
    case ValueErrorType.StringMaxLength:
      return `too long: at most ${String(s.maxLength)} characters`;
    case ValueErrorType.ObjectMinProperties:
      return `give at least ${String(s.minProperties)} of: ${Object.keys((s.properties as Schema | undefined) ?? {}).join(', ')}`;
    default:
      return e.message;
  }
}
