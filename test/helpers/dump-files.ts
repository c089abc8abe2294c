import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Manifest, ManifestEntry } from '../../lib/model/manifest.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

/**
 * Dumps damaged on purpose, in a run directory as the dump step wrote it: the file replaced and,
 * unless the damage should be caught by the sha256, its manifest entry rewritten to match (so
 * only loading the dump can tell).
 */

export const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

export function readRunManifest(runDir: string): Manifest {
  return JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as Manifest;
}

/** The one ok database entry of `database` (of `kind` when given). */
export function dumpEntry(runDir: string, database: string, kind?: string): ManifestEntry {
  const hits = readRunManifest(runDir).entries.filter((e) => e.object === 'database' && e.database === database && (!kind || e.kind === kind) && e.path);
  if (hits.length !== 1) throw new Error(`${runDir}: ${hits.length} dumps of ${kind ?? ''} '${database}'`);
  return hits[0]!;
}

/** Replace the dump of `database`; with `keepManifestHash` false the manifest's sha256 and size follow it (the inventory stays). */
export function replaceDump(runDir: string, database: string, content: Buffer, opts: { keepManifestHash: boolean; kind?: string }): string {
  const manifest = readRunManifest(runDir);
  const entry = dumpEntry(runDir, database, opts.kind);
  const file = join(runDir, entry.path!);
  writeFileSync(file, content);
  if (!opts.keepManifestHash) {
    const entries = manifest.entries.map((e) => (e.path === entry.path ? { ...e, sha256: sha256(file), bytes: content.length } : e));
    writeFileSync(join(runDir, 'manifest.json'), JSON.stringify({ ...manifest, entries } satisfies Manifest, null, 2));
  }
  return file;
}

/** The SQL text of a zstd-compressed dump (real zstd). */
export async function zstdText(file: string): Promise<string> {
  return (await run(cmd('zstd', ['-q', '-d', '-c', file]))).stdout;
}

/** `text` compressed with real zstd. */
export async function zstdBytes(text: string, scratch: string): Promise<Buffer> {
  writeFileSync(scratch, text);
  await run(cmd('zstd', ['-q', '-f', '--rm', scratch, '-o', `${scratch}.zst`]));
  return readFileSync(`${scratch}.zst`);
}
