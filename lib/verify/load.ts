import { readManifestIfAny } from '../dumps/manifest-file.js';
import { join } from 'node:path';
import type { Inventory } from '../model/inventory.js';
import type { DumpFile } from '../model/kind.js';
import { findKind } from '../kinds/index.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import type { ThrowawayServers } from './servers.js';

/** No throwaway server to load into (none of that major version, it would not start, no room): the dump is not proven bad. */
export class VerifyUnavailableError extends BackupError {
  constructor(message: string, cause?: unknown) {
    super(message, ExitCode.VERIFY_FAILED, {}, { cause });
  }
}

const unavailable = (err: unknown): never => {
  throw err instanceof VerifyUnavailableError ? err : new VerifyUnavailableError(`no throwaway server: ${(err as Error).message}`, err);
};

/**
 * Load one dump into a throwaway server and read back the inventory of what arrived, then drop
 * it again (disk space). It loads through the kind's RestoreSession, the code `restore db` runs:
 * a dump that verifies also restores, and every nightly verify exercises the restore's loader.
 * The kind compares the accounts the load left with those recorded at dump time (`problems`).
 */
export async function loadAndInventory(entry: ManifestEntry, runDir: string, servers: ThrowawayServers, signal?: AbortSignal, problems: string[] = [], notes: string[] = []): Promise<Inventory> {
  const kind = findKind(entry.kind);
  if (!kind) throw new Error(`cannot load a ${entry.kind} dump`);
  const server = await servers.serverFor(kind.name, entry.serverVersion ?? '').catch(unavailable);
  const accounts = readManifestOf(runDir)?.entries.find((e) => e.kind === entry.kind && e.object === kind.serverWide && e.status === 'ok' && e.path);
  const result = await kind.verifyLoad({
    loaded: servers.loaded,
    log: servers.log,
    server,
    database: entry.database!,
    dump: dumpFileOf(runDir, entry),
    ...(accounts ? { accounts: { file: dumpFileOf(runDir, accounts), ...(accounts.details ? { details: accounts.details } : {}) } } : {}),
    unavailable,
    ...(signal ? { signal } : {}),
  });
  problems.push(...result.problems);
  notes.push(...result.notes);
  return result.inventory;
}

/** A manifest entry's file as the restore sessions take it (the same fields restore db passes). */
function dumpFileOf(runDir: string, entry: ManifestEntry): DumpFile {
  return {
    path: join(runDir, entry.path!),
    compression: entry.compression,
    format: entry.format === 'custom' ? 'custom' : 'sql',
    ...(entry.map ? { map: { path: join(runDir, entry.map.path), sha256: entry.map.sha256 } } : {}),
    ...(entry.database ? { database: entry.database } : {}),
    ...(entry.details ? { details: entry.details } : {}),
  };
}

function readManifestOf(runDir: string): Manifest | undefined {
  return readManifestIfAny(runDir);
}
