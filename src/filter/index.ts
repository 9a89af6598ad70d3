export { normalizePath, matchesPrefix, DEFAULT_MAX_PATH_LENGTH } from './path.ts';
export type { PathResult, NormalizeOptions } from './path.ts';
