import { accessSync, constants } from 'node:fs';
import { MissingDependencyError } from '../errors.js';
import { delimiter, join } from 'node:path';

/** First executable named `name` on PATH (or the path itself when it contains a slash). */
export function which(name: string, path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Cron's PATH lacks /usr/local/bin and /usr/sbin on some systems: always search these too. */
export const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(delimiter);

export function whichSystem(name: string): string | undefined {
  return which(name, [process.env.PATH ?? '', SYSTEM_PATH].filter(Boolean).join(delimiter));
}

const resolved = new Map<string, string>();

/**
 * The absolute path of a tool, found once per process on PATH plus the system directories, and
 * the one every later command runs: cron's PATH is not the shell's, and a check that found
 * /usr/local/bin/zstd must not be followed by a run of whatever `zstd` means elsewhere.
 * Throws MissingDependencyError naming the package when it is not installed.
 */
export function resolveTool(name: string, debianPackage: string = name, rhelPackage: string = debianPackage): string {
  const known = resolved.get(name);
  if (known) return known;
  const found = whichSystem(name);
  if (!found) throw new MissingDependencyError(name, debianPackage, rhelPackage);
  resolved.set(name, found);
  return found;
}
