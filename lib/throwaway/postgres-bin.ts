import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isExecutable, whichSystem } from '../proc/which.js';

/** PGDG (RHEL) and Debian keep one directory per major version; neither is on PATH by default. */
export function pgBinDirs(major?: string): string[] {
  if (major !== undefined) return [`/usr/pgsql-${major}/bin`, `/usr/lib/postgresql/${major}/bin`];
  const found: { dir: string; v: number }[] = [];
  const scan = (parent: string, re: RegExp, sub: (n: string) => string): void => {
    let names: string[] = [];
    try {
      names = readdirSync(parent);
    } catch {
      return;
    }
    for (const n of names) {
      const m = re.exec(n);
      if (m) found.push({ dir: sub(n), v: Number(m[1]) });
    }
  };
  scan('/usr', /^pgsql-(\d+(?:\.\d+)?)$/, (n) => `/usr/${n}/bin`);
  scan('/usr/lib/postgresql', /^(\d+(?:\.\d+)?)$/, (n) => `/usr/lib/postgresql/${n}/bin`);
  return found.sort((a, b) => b.v - a.v).map((f) => f.dir);
}

/** `tool` from bin_dir, else the version directories (a major's own, or the newest), else PATH. */
export function findPgTool(tool: string, options: { binDir?: string; major?: string } = {}): string | undefined {
  if (options.binDir) {
    const p = join(options.binDir, tool);
    return isExecutable(p) ? p : undefined;
  }
  for (const dir of pgBinDirs(options.major)) {
    if (isExecutable(join(dir, tool))) return join(dir, tool);
  }
  return whichSystem(tool);
}
