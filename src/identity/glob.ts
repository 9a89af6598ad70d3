/** `*` and `?` globs, compiled once to anchored regular expressions. */
export function globToRegExp(glob: string, caseInsensitive = false): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, caseInsensitive ? 'is' : 's');
}
