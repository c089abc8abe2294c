import { mysqlIdent } from '../kinds/mysql/sql.js';
import { readManifestIfAny } from '../dumps/manifest-file.js';
import { join } from 'node:path';
import type { Inventory } from '../model/inventory.js';
import type { DumpFile } from '../model/kind.js';
import { mysqlKind, unescapeBatch } from '../kinds/mysql/kind.js';
import { accountProblems, recordAccounts, recordedOf } from '../kinds/mysql/accounts-check.js';
import { accountKey } from '../kinds/mysql/accounts-parse.js';
import type { MariadbServer } from '../sandbox/mariadb.js';
import type { PostgresServer } from '../sandbox/postgres.js';
import { parseRecordedRoles, recordedRolesOf, roleProblems, ROLES_SQL } from '../kinds/postgresql/accounts.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { parseConfigText, type LoadedConfig } from '../config/load.js';
import { resolvePaths } from '../config/paths.js';
import { postgresqlKind } from '../kinds/postgresql/kind.js';
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


/** The sessions' defaults (timeouts, limits): the target's connection comes from the throwaway server. */
function defaultConfig(): LoadedConfig {
  const config = parseConfigText('', undefined);
  return { config, file: undefined, paths: resolvePaths(config) };
}

/**
 * Load one dump into a throwaway server and read back the inventory of what arrived, then drop
 * it again (disk space). It loads through the kind's RestoreSession, the code `restore db` runs:
 * a dump that verifies also restores, and every nightly verify exercises the restore's loader.
 */
export async function loadAndInventory(entry: ManifestEntry, runDir: string, servers: ThrowawayServers, signal?: AbortSignal, problems: string[] = [], notes: string[] = []): Promise<Inventory> {
  const database = entry.database!;
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
      // Read as `restore db` reads what it loaded (the session's inventory), compared the same way.
      return await session.inventory(database, signal);
    } finally {
      await server.sql(`DROP DATABASE IF EXISTS ${mysqlIdent(database)}`).catch(() => undefined);
      await session.close();
    }
  }
  if (entry.kind === 'postgresql') {
    // The same path as `restore db`: the kind's RestoreSession on the throwaway server, the
    // accounts from the run's globals export, the database created as it was dumped, then the
    // load with owners as dumped. Any name loads the same (the throwaway cluster's own
    // `postgres` database must not collide with a dump of one).
    const server = await servers.postgresFor(entry.serverVersion ?? '').catch(unavailable);
    const own = ownRoles(server); // before the first load adds any
    own.catch(() => undefined); // seen where it is awaited
    const target = 'asb_verify';
    const session = await postgresqlKind
      .openTarget({ loaded: defaultConfig(), log: servers.log, signal }, { host: server.socketDir, port: server.port, user: 'postgres', bin_dir: server.binDir })
      .catch(unavailable);
    try {
      const dump = dumpFileOf(runDir, entry);
      const globals = readManifestOf(runDir)?.entries.find((e) => e.kind === 'postgresql' && e.object === 'globals' && e.status === 'ok' && e.path);
      const created = await session.ensureAccounts(target, dump, globals && dumpFileOf(runDir, globals), signal);
      await session.createDatabase(target, dump, signal);
      await session.load(target, dump, signal);
      // The roles the globals and the load left on the server, against the list recorded at dump time.
      const recorded = recordedRolesOf(globals?.details);
      if (!recorded) notes.push(`roles not compared: run older than the role list in its manifest (or dumped without a superuser): ${globals ? 'its globals export records none' : 'it has no globals export'}`);
      else {
        const now = parseRecordedRoles(await server.sql(ROLES_SQL));
        problems.push(...roleProblems(recorded, now, new Set(created), await own));
      }
      return await session.inventory(target, signal);
    } finally {
      await session.dropDatabase(target).catch(() => undefined);
      await session.close();
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
  return readManifestIfAny(runDir);
}

/** The roles a throwaway PostgreSQL had before anything was loaded (its bootstrap superuser). */
const ownPg = new WeakMap<PostgresServer, Promise<Set<string>>>();
function ownRoles(server: PostgresServer): Promise<Set<string>> {
  let p = ownPg.get(server);
  if (!p) {
    p = server.sql(ROLES_SQL).then((text) => new Set(parseRecordedRoles(text).map((r) => r.name)));
    ownPg.set(server, p);
  }
  return p;
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
