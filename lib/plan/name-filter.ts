import { globSource } from './glob.js';

/**
 * include/exclude globs for database names: `*` any run of characters, `?` one character,
 * `[abc]` a class. Names are not paths, so `/` is an ordinary character here.
 */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${globSource(glob, '.')}$`, 'su');
}

export function nameFilter(include: readonly string[], exclude: readonly string[]): (name: string) => boolean {
  const inc = include.map(globToRegExp);
  const exc = exclude.map(globToRegExp);
  return (name) => inc.some((r) => r.test(name)) && !exc.some((r) => r.test(name));
}
