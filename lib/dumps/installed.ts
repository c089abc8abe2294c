import { readManifestIfAny } from './manifest-file.js';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { underRoot } from '../config/paths.js';
import { whichSystem } from '../proc/which.js';
import { LATEST } from './layout.js';
import type { InstallSigns, KindName } from '../model/kind.js';

export type { InstallSigns } from '../model/kind.js';

/**
 * `enabled: auto` means "dump it when a server of this kind is installed here", not "when it
 * answers": a crashed mysqld at 3 am must be a failed dump, never a quiet skip that lets
 * retention delete the last good dumps. Evidence, any one is enough:
 * - a server binary or a systemd unit on the system (not under paths.root: it is the machine's);
 * - its data directory, or an earlier run that dumped this kind, under paths.root.
 * Each kind says what its evidence is (DatabaseKind.installSigns); this reads it.
 */

const UNIT_DIRS = ['/etc/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];

/** How the machine's own binaries and units are looked up (tests describe a machine without servers). */
export interface SystemView {
  which(name: string): string | undefined;
  exists(path: string): boolean;
}

const THIS_MACHINE: SystemView = { which: whichSystem, exists: existsSync };

/** Why we expect a server of `kind` here, or undefined when nothing says one is installed. */
export function installedEvidence(kind: KindName, signs: InstallSigns, loaded: LoadedConfig, system: SystemView = THIS_MACHINE): string | undefined {
  for (const b of signs.binaries) {
    const p = system.which(b);
    if (p) return `server binary ${p}`;
  }
  for (const p of signs.extraBinaries?.() ?? []) if (system.exists(p)) return `server binary ${p}`;
  for (const dir of UNIT_DIRS) for (const u of signs.units) if (system.exists(join(dir, u))) return `service unit ${join(dir, u)}`;
  for (const d of signs.dataDirs) {
    const found = expandStar(underRoot(loaded.paths.root, d));
    if (found) return `data directory ${found}`;
  }
  if (dumpedBefore(loaded.paths.dumpsDir, kind)) return `an earlier run in ${loaded.paths.dumpsDir} dumped ${kind}`;
  return undefined;
}

function dumpedBefore(dumpsDir: string, kind: KindName): boolean {
  return readManifestIfAny(join(dumpsDir, LATEST))?.entries.some((e) => e.kind === kind && e.status === 'ok') ?? false;
}

function versionDirs(parent: string): string[] {
  try {
    return readdirSync(parent);
  } catch {
    return [];
  }
}

/** The first existing path for a pattern with at most one `*` segment. */
function expandStar(pattern: string): string | undefined {
  const i = pattern.indexOf('/*/');
  if (i < 0) return existsSync(pattern) ? pattern : undefined;
  const parent = pattern.slice(0, i);
  const rest = pattern.slice(i + 3);
  for (const name of versionDirs(parent)) {
    const p = join(parent, name, rest);
    if (existsSync(p)) return p;
  }
  return undefined;
}
