import { SITE_GLOB, SITE_ID_SOURCE } from '../model/site.js';

/**
 * Shell-style globs (`*`, `?`, `[abc]`, `[!abc]`) as regular-expression source. One translator
 * for database-name filters, path expansion and the Bacula FileSet's regexes. `any` is what
 * `*`/`?` may match: `.` for names (a `/` is an ordinary character there), `[^/]` for paths.
 */
export function globSource(glob: string, any: '.' | '[^/]'): string {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += `${any}*`;
    else if (c === '?') re += any;
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        const body = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? '^' + body.slice(1) : body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return re;
}

/**
 * An absolute path glob as an anchored regular expression, segment by segment: `*` and `?` stay
 * inside one path segment, and a whole segment `site*` means ApisCP's numbered site directories
 * only (`site[0-9]+`), never the domain-name symlinks or other site-prefixed names beside them.
 */
export function pathGlobSource(glob: string): string {
  const segment = (s: string): string => (s === SITE_GLOB ? SITE_ID_SOURCE : globSource(s, '[^/]'));
  return '^' + glob.split('/').map(segment).join('/') + '$';
}
