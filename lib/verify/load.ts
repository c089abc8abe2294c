import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Inventory } from '../model/inventory.js';
import type { DumpFile } from '../model/kind.js';
import { mysqlKind, unescapeBatch } from '../dumps/mysql.js';
import { accountProblems, recordAccounts, recordedOf } from '../dumps/mysql-accounts-check.js';
import { accountKey } from '../dumps/mysql-accounts-parse.js';
import type { MariadbServer } from '../sandbox/mariadb.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Manifest, ManifestEntry } from '../model/manifest.js';
import { mysqlInventorySql, parseMysqlInventory } from '../dumps/mysql-inventory.js';
import { parsePgInventory, pgInventorySql } from '../dumps/postgresql-inventory.js';
import { loadDump } from '../sandbox/db-checks.js';
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

const q = (name: string): string => '`' + name.replace(/`/g, '``') + '`';
const pgIdent = (name: string): string => '"' + name.replace(/"/g, '""') + '"';

/**
 * Load one dump into a throwaway server and read back the inventory of what arrived, then drop
 * it again (disk space). The one place that knows how a dump is loaded: today the sandbox loader;
 * when every database kind has its own restore, this calls that instead.
 */
export async function loadAndInventory(entry: ManifestEntry, runDir: string, servers: ThrowawayServers, signal?: AbortSignal, problems: string[] = []): Promise<Inventory> {
  const database = entry.database!;
  const started = Date.now();
  if (entry.kind === 'mysql') {
    // The way `restore db` loads it (the kind's RestoreSession): the accounts it needs from the
    // run's users export first (a view's DEFINER), the database with its own character set and
    // collation, the load, then the grants; only the server differs.
    const server = await servers.mysqlFor(entry.serverVersion ?? '').catch(unavailable);
    if (!servers.loaded) throw new Error('verify: the throwaway servers were opened without the config');
    const bootstrap = ownAccounts(server); // before the first load adds any
    bootstrap.catch(() => undefined); // seen where it is awaited
    const session = await mysqlKind.openTarget({ loaded: servers.loaded, log: servers.log, signal }, servers.mysqlTarget(server)).catch(unavailable);
    try {
      const dump = dumpFileOf(runDir, entry);
      const usersEntry = readManifestOf(runDir)?.entries.find((e) => e.kind === 'mysql' && e.object === 'users' && e.status === 'ok' && e.path);
      const work = await session.prepareAccounts!({ database, into: database, copyGrants: false, accounts: 'keep' }, dump, usersEntry && dumpFileOf(runDir, usersEntry), signal);
      await work.beforeLoad();
      await session.createDatabase(database, dump, signal);
      await session.load(database, dump, signal);
      await work.afterLoad();
      // The accounts the load left on the server, against the list recorded at dump time.
      const recorded = recordedOf(usersEntry?.details);
      if (recorded) {
        const query = async (sql: string): Promise<string[][]> => (await server.sql(sql)).split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
        problems.push(...accountProblems(recorded, await recordAccounts(query, unescapeBatch, signal), database, await bootstrap));
      }
      const text = await server.sql(mysqlInventorySql(database, { updateTimes: false }));
      const rows = text.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
      return parseMysqlInventory(rows, { ms: Date.now() - started });
    } finally {
      await server.sql(`DROP DATABASE IF EXISTS ${q(database)}`).catch(() => undefined);
      await session.close();
    }
  }
  if (entry.kind === 'postgresql') {
    // pg_dump -Fc names no database (without --create): any name loads the same, and the
    // throwaway cluster's own `postgres` database must not collide with a dump of one.
    const server = await servers.postgresFor(entry.serverVersion ?? '').catch(unavailable);
    const target = 'asb_verify';
    try {
      await loadDump(entry, runDir, { postgresql: server }, target, { signal, noPrivileges: true });
      return parsePgInventory(await server.sql(pgInventorySql(), target), 'snapshot', Date.now() - started);
    } finally {
      await server.sql(`DROP DATABASE IF EXISTS ${pgIdent(target)}`).catch(() => undefined);
    }
  }
  throw new Error(`cannot load a ${entry.kind} dump`);
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
  try {
    return JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
}

/** The accounts a throwaway MariaDB had before anything was loaded (root, mariadb.sys, its OS user's). */
const own = new WeakMap<MariadbServer, Promise<Set<string>>>();
function ownAccounts(server: MariadbServer): Promise<Set<string>> {
  let p = own.get(server);
  if (!p) {
    p = server.sql('SELECT HEX(User), HEX(Host) FROM mysql.user').then((text) => new Set(text.split('\n').filter(Boolean).map((l) => {
      const [u, h] = l.split('\t');
      return accountKey(Buffer.from(u ?? '', 'hex').toString('utf8'), Buffer.from(h ?? '', 'hex').toString('utf8'));
    })));
    own.set(server, p);
  }
  return p;
}
