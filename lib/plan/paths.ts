import { lstat, readdir, stat } from 'node:fs/promises';
import { IN_PROGRESS_GLOB } from '../model/dump-dir.js';
import { SITE_GLOB, SITE_ID } from '../model/site.js';
import { globSource } from './glob.js';
import { join } from 'node:path';
import type { ResolvedPaths } from '../config/paths.js';

/**
 * Turn the configured include/exclude globs into concrete paths for the engines.
 *
 * Why our own matcher: ApisCP's /home/virtual holds `siteN` directories AND symlinks to them named
 * after each domain and `adminN`. A shell `site*` would also match a domain such as
 * `site-builder.com` and every engine would then store the site twice, so a `site*` segment
 * matches only real directories named `^site[0-9]+$`. Nothing here follows a symlink named by a
 * glob. Paths that do not exist (a server without PostgreSQL) are simply left out.
 */
export interface BackupPaths {
  readonly sources: string[];
  readonly excludes: string[];
}

/**
 * What to back up, as globs: paths.include plus the dumps dir, minus paths.exclude and runs being
 * written. The Bacula FileSet takes these as they are (its client expands them at backup time).
 */
export function backupGlobs(paths: ResolvedPaths): BackupPaths {
  return { sources: [...paths.include, paths.dumpsDir], excludes: [...paths.exclude, inProgressGlob(paths)] };
}

function inProgressGlob(paths: ResolvedPaths): string {
  return join(paths.dumpsDir, IN_PROGRESS_GLOB);
}

export async function expandBackupPaths(paths: ResolvedPaths): Promise<BackupPaths> {
  const globs = backupGlobs(paths);
  const sources = new Set<string>();
  for (const g of globs.sources) for (const p of await expandGlob(g)) sources.add(p);
  sources.add(paths.dumpsDir); // also before the first run created it
  const excludes = new Set<string>();
  // The in-progress glob stays a pattern: a run may start writing after we planned (every engine understands `*`).
  for (const g of globs.excludes) for (const p of g === inProgressGlob(paths) ? [g] : await expandGlob(g)) excludes.add(p);
  return { sources: withoutNested([...sources].sort()), excludes: [...excludes].sort() };
}

/** Existing paths matching an absolute glob (`*`, `?`, `[...]` within one segment). */
export async function expandGlob(glob: string): Promise<string[]> {
  const segments = glob.split('/').filter(Boolean);
  let current = ['/'];
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    const next: string[] = [];
    for (const base of current) {
      if (!hasMagic(segment)) {
        const p = join(base, segment);
        // The final segment may be a symlink or a file; intermediate ones must lead somewhere.
        if (last ? await exists(p, lstat) : await isDir(p)) next.push(p);
        continue;
      }
      const names = await readdir(base).catch(() => [] as string[]);
      const re = segmentRegExp(segment);
      for (const name of names.sort()) {
        if (!re.test(name)) continue;
        const p = join(base, name);
        if (segment === SITE_GLOB) {
          // Only the real siteN directory: domain-name and adminN symlinks point at it.
          const st = await lstat(p).catch(() => undefined);
          if (st?.isDirectory() && SITE_ID.test(name)) next.push(p);
        } else if (last || (await isDir(p))) {
          next.push(p);
        }
      }
    }
    current = next;
    if (current.length === 0) break;
  }
  return segments.length === 0 ? ['/'] : current;
}

function hasMagic(segment: string): boolean {
  return /[*?[]/.test(segment);
}

/** Shell-style: `*` and `?` never match a leading dot (hidden files stay hidden, like bash). */
export function segmentRegExp(segment: string): RegExp {
  const leadingDot = segment.startsWith('.') ? '' : '(?!\\.)';
  return new RegExp(`^${leadingDot}${globSource(segment, '[^/]')}$`);
}

/** A source inside another source would be stored twice by some engines. */
function withoutNested(sorted: string[]): string[] {
  const out: string[] = [];
  for (const p of sorted) {
    if (!out.some((q) => q === '/' || p === q || p.startsWith(q + '/'))) out.push(p);
  }
  return out;
}

async function exists(p: string, how: typeof lstat): Promise<boolean> {
  return how(p).then(
    () => true,
    () => false,
  );
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
