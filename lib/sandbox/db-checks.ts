import { mysqlIdent } from '../kinds/mysql/sql.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decompressorCommand } from '../dumps/compress.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import type { Compression } from '../model/kind.js';
import { cmd } from '../run/command.js';
import { pipeToFile } from '../run/pipeline.js';
import { whichSystem } from '../run/which.js';
import { osUser } from '../os-user.js';
import type { MariadbServer } from './mariadb.js';
import type { PostgresServer } from './postgres.js';

/**
 * Proof that a dump is a backup: load it into a fresh database and compare row checksums with
 * the original. Used by the demo and the end-to-end tests (sandbox servers only).
 */
export type Checksums = Record<string, string>;

const lit = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
const pgIdent = (name: string): string => '"' + name.replace(/"/g, '""') + '"';

/** CHECKSUM TABLE of every base table, keyed by table name. */
export async function mysqlChecksums(server: MariadbServer, database: string): Promise<Checksums> {
  const tables = (await server.sql(`SELECT table_name FROM information_schema.tables WHERE table_schema = ${lit(database)} AND table_type = 'BASE TABLE' ORDER BY 1`))
    .split('\n')
    .filter(Boolean);
  const out: Checksums = {};
  for (const t of tables) {
    const row = await server.sql(`CHECKSUM TABLE ${mysqlIdent(database)}.${mysqlIdent(t)} EXTENDED`);
    out[t] = row.trim().split('\t').pop() ?? '';
  }
  return out;
}

/** md5 over every row's text form in a stable order, per table in every non-system schema. */
export async function postgresChecksums(server: PostgresServer, database: string): Promise<Checksums> {
  const tables = (await server.sql(`SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1`, database))
    .split('\n')
    .filter(Boolean);
  const out: Checksums = {};
  for (const t of tables) {
    const [schema, table] = [t.slice(0, t.indexOf('.')), t.slice(t.indexOf('.') + 1)];
    const ref = `${pgIdent(schema)}.${pgIdent(table)}`;
    out[t] = (await server.sql(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM ${ref} x`, database)).trim();
  }
  return out;
}

export interface LoadOptions {
  /** PostgreSQL: skip GRANT/REVOKE (a throwaway server lacks the roles; verify compares objects and rows). */
  readonly noPrivileges?: boolean;
  readonly signal?: AbortSignal;
}

/** Load one manifest entry's dump (found under `runDir`) into a new database `target`. */
export async function loadDump(entry: ManifestEntry, runDir: string, target: { mysql?: MariadbServer; postgresql?: PostgresServer }, database: string, options: LoadOptions = {}): Promise<void> {
  if (!entry.path) throw new Error(`${entry.kind} ${entry.database}: the manifest has no file for it`);
  const file = join(runDir, entry.path);
  if (entry.kind === 'mysql') {
    const server = target.mysql!;
    await server.sql(`CREATE DATABASE ${mysqlIdent(database)} CHARACTER SET utf8mb4`);
    const mariadb = whichSystem('mariadb') ?? whichSystem('mysql') ?? 'mariadb';
    const client = cmd(mariadb, ['--no-defaults', `--socket=${server.socket}`, '--user=root', '--default-character-set=utf8mb4', '--max-allowed-packet=1G', `--database=${database}`]);
    // Streamed: decompressor | client, nothing of the dump held in memory.
    const dir = mkdtempSync(join(tmpdir(), 'asb-load-'));
    try {
      await pipeToFile([decompressorCommand(entry.compression as Compression, file), client], join(dir, 'out'), { signal: options.signal });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  if (entry.kind === 'postgresql') {
    const server = target.postgresql!;
    await server.sql(`CREATE DATABASE ${pgIdent(database)}`);
    // Dumps are root-only (0600 in a 0700 tree); pg_restore runs as postgres for peer auth, so
    // it reads the dump from a pipe fed by `cat` running as us (no copy of a many-GB file).
    const pw = osUser('postgres');
    if (!pw) throw new Error('no postgres user');
    const dir = mkdtempSync(join(tmpdir(), 'asb-restore-'));
    const cat = whichSystem('cat') ?? 'cat';
    const args = ['--no-owner', ...(options.noPrivileges ? ['--no-privileges'] : []), '--exit-on-error', '-h', server.socketDir, '-p', String(server.port), '-U', 'postgres', '-d', database];
    try {
      await pipeToFile([cmd(cat, ['--', file]), cmd(join(server.binDir, 'pg_restore'), args, { uid: pw.uid, gid: pw.gid, cwd: '/' })], join(dir, 'out'), { signal: options.signal });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  throw new Error(`cannot load a ${entry.kind} export`);
}

export function databaseEntries(manifest: Manifest): ManifestEntry[] {
  return manifest.entries.filter((e) => e.object === 'database' && e.status === 'ok');
}
