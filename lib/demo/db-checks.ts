import { join } from 'node:path';
import { findKind, mysqlKind, postgresqlKind } from '../kinds/index.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import type { KindName, ScratchLoadOptions } from '../model/kind.js';
import type { MariadbServer } from '../throwaway/mariadb.js';
import type { PostgresServer } from '../throwaway/postgres.js';

/**
 * Proof that a dump is a backup: load it into a fresh database and compare row checksums with
 * the original. Used by the demo and the end-to-end tests (sandbox servers only); each kind
 * loads with its own client tool and says what its checksum is (DatabaseKind.scratchLoad, checksums).
 */
export type Checksums = Record<string, string>;

/** CHECKSUM TABLE of every base table, keyed by table name. */
export function mysqlChecksums(server: MariadbServer, database: string): Promise<Checksums> {
  return mysqlKind.checksums(server, database);
}

/** md5 over every row's text form in a stable order, per table in every non-system schema. */
export function postgresChecksums(server: PostgresServer, database: string): Promise<Checksums> {
  return postgresqlKind.checksums(server, database);
}

/** The sandbox's servers, by the kind that loads into each. */
export type SandboxServers = { readonly [K in KindName]?: K extends 'mysql' ? MariadbServer : PostgresServer };

/** The checksums of `database` on the sandbox's server of `kind` (a manifest entry's). */
export function checksums(kind: string, target: SandboxServers, database: string): Promise<Checksums> {
  const k = findKind(kind);
  if (!k) throw new Error(`no checksums for a ${kind} database`);
  return k.checksums(serverOf(target, k.name), database);
}

export type LoadOptions = ScratchLoadOptions;

/** Load one manifest entry's dump (found under `runDir`) into a new database `target`. */
export async function loadDump(entry: ManifestEntry, runDir: string, target: SandboxServers, database: string, options: LoadOptions = {}): Promise<void> {
  if (!entry.path) throw new Error(`${entry.kind} ${entry.database}: the manifest has no file for it`);
  const kind = findKind(entry.kind);
  if (!kind) throw new Error(`cannot load a ${entry.kind} export`);
  const dump = { path: join(runDir, entry.path), compression: entry.compression, format: entry.format === 'custom' ? ('custom' as const) : ('sql' as const) };
  await kind.scratchLoad(serverOf(target, kind.name), dump, database, options);
}

function serverOf(target: SandboxServers, kind: KindName): MariadbServer | PostgresServer {
  const server = target[kind];
  if (!server) throw new Error(`the sandbox has no ${kind} server`);
  return server;
}

export function databaseEntries(manifest: Manifest): ManifestEntry[] {
  return manifest.entries.filter((e) => e.object === 'database' && e.status === 'ok');
}
