import { globSource } from './glob.js';

/**
 * include/exclude globs for database names: `*` any run of characters, `?` one character,
 * `[abc]` a class. Names are not paths, so `/` is an ordinary character here.
 */
export function nameGlobRegExp(glob: string): RegExp {
  return new RegExp(`^${globSource(glob, '.')}$`, 'su');
}

export function nameFilter(include: readonly string[], exclude: readonly string[]): (name: string) => boolean {
  const inc = include.map(nameGlobRegExp);
  const exc = exclude.map(nameGlobRegExp);
  return (name) => inc.some((r) => r.test(name)) && !exc.some((r) => r.test(name));
}
