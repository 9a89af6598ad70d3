/**
 * Where a setting is written: the YAML parser keeps every node's offset, and a LineCounter turns
 * offsets into 1-based line and column. `locate` walks a config path through the document; when the
 * path is not written (a default, a missing key) it answers with the nearest written ancestor, so
 * every problem points somewhere the operator can look. JSON files are YAML too, for this purpose.
 */
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from 'yaml';

export interface Position {
  line: number;
  column: number;
}

/** A config path as segments: keys and list indexes. */
export type PathSegments = ReadonlyArray<string | number>;

export interface Source {
  /** The parsed value; undefined when the text has syntax errors. */
  value: unknown;
  /** Syntax errors, each with its position. */
  syntax: Array<{ message: string } & Position>;
  /** `at: 'key'` points at the key of the last segment (for unknown keys), else at its value. */
  locate(path: PathSegments, at?: 'key' | 'value'): Position | undefined;
}

const keyText = (key: unknown): string | undefined => (isScalar(key) ? String(key.value) : typeof key === 'string' ? key : undefined);

export function parseSource(text: string): Source {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const pos = (offset: number | undefined): Position | undefined => {
    if (offset === undefined) return undefined;
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const syntax = doc.errors.map((e) => ({ message: e.message.split('\n')[0] ?? e.message, ...(pos(e.pos[0]) ?? { line: 1, column: 1 }) }));
  return {
    value: syntax.length ? undefined : doc.toJS(),
    syntax,
    locate(path, at = 'value') {
      let node: unknown = doc.contents;
      let found = pos((node as Node | null)?.range?.[0]);
      for (let i = 0; i < path.length; i++) {
        const seg = path[i];
        const last = i === path.length - 1;
        if (isMap(node)) {
          const pair = node.items.find((p) => isPair(p) && keyText(p.key) === String(seg));
          if (!pair) break;
          const keyPos = pos((pair.key as Node | null)?.range?.[0]);
          const valuePos = pos((pair.value as Node | null)?.range?.[0]);
          found = (last && at === 'key') || !valuePos ? keyPos ?? found : valuePos;
          node = pair.value;
        } else if (isSeq(node) && typeof seg === 'number') {
          const item = node.items[seg] as Node | undefined;
          if (!item) break;
          found = pos(item.range?.[0]) ?? found;
          node = item;
        } else break;
      }
      return found;
    },
  };
}

/** `routes[0].upstreamTls.ca` → ['routes', 0, 'upstreamTls', 'ca']. */
export function pathSegments(path: string): PathSegments {
  return [...path.matchAll(/\[(\d+)\]|([^.[\]]+)/g)].map((m) => (m[1] !== undefined ? Number(m[1]) : (m[2] as string)));
}
