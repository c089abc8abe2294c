import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { MANIFEST_VERSION, type Manifest } from '../model/manifest.js';
import { MANIFEST } from './layout.js';

/**
 * The one reader of a run's manifest.json. Every version this code wrote is read (fields added
 * later are optional, so an older manifest is a valid newer one); a manifest from a newer
 * apiscp-backup is refused by name rather than half understood. test/e2e/compat.test.ts holds runs
 * made by older code.
 */
export function readManifestFile(runDir: string): Manifest {
  const file = join(runDir, MANIFEST);
  const text = readFileSync(file, 'utf8');
  const m = JSON.parse(text) as Partial<Manifest> & { version?: unknown };
  if (typeof m.version !== 'number' || !Array.isArray(m.entries)) throw new BackupError(`${file} is not a manifest of apiscp-backup`, ExitCode.USAGE, { file });
  if (m.version > MANIFEST_VERSION) throw new BackupError(`${file} was written by a newer apiscp-backup (manifest version ${m.version}; this one reads up to ${MANIFEST_VERSION}): upgrade apiscp-backup to read it`, ExitCode.USAGE, { file, version: m.version });
  return m as Manifest;
}

/** The manifest, or undefined when the run has none that can be read (a crashed or foreign run). */
export function readManifestIfAny(runDir: string): Manifest | undefined {
  try {
    return readManifestFile(runDir);
  } catch {
    return undefined;
  }
}
