import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where this installation's files are: found by walking up to its package.json, not by a path
 * relative to the calling module, which differs between lib/ (sources), dist/lib/ and the
 * CLI's bundle (dist/bundle/cli, lib/cli/bundled.ts), where every module shares one directory.
 */
export interface PackagePaths {
  /** The package root (package.json, config/, sandbox/). */
  readonly root: string;
  /** The built entry points and modules. */
  readonly dist: string;
  readonly version: string;
}

let found: PackagePaths | undefined;

export function packagePaths(): PackagePaths {
  if (found) return found;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'apiscp-backup') return (found = { root: dir, dist: join(dir, 'dist'), version: pkg.version ?? '0.0.0' });
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`apiscp-backup: no package.json of apiscp-backup above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}
