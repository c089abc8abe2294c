import type { Inventory } from '../model/inventory.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfigText, type LoadedConfig } from '../config/load.js';
import { resolvePaths } from '../config/paths.js';
import { MANIFEST } from '../dumps/layout.js';
import { postgresqlKind } from '../dumps/postgresql.js';
import type { DumpFile } from '../model/kind.js';
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

function dumpFileOf(runDir: string, entry: ManifestEntry): DumpFile {
  return { path: join(runDir, entry.path!), compression: entry.compression, format: entry.format === 'custom' ? 'custom' : 'sql' };
}

function runManifest(runDir: string): Manifest {
  return JSON.parse(readFileSync(join(runDir, MANIFEST), 'utf8')) as Manifest;
}

/** The sessions' defaults (timeouts, limits): the target's connection comes from the throwaway server. */
function defaultConfig(): LoadedConfig {
  const config = parseConfigText('', undefined);
  return { config, file: undefined, paths: resolvePaths(config) };
}

/**
 * Load one dump into a throwaway server and read back the inventory of what arrived, then drop
 * it again (disk space). The one place that knows how a dump is loaded: today the sandbox loader;
 * when every database kind has its own restore, this calls that instead.
 */
export async function loadAndInventory(entry: ManifestEntry, runDir: string, servers: ThrowawayServers, signal?: AbortSignal): Promise<Inventory> {
  const database = entry.database!;
  const started = Date.now();
  if (entry.kind === 'mysql') {
    const server = await servers.mysqlFor(entry.serverVersion ?? '').catch(unavailable);
    try {
      await loadDump(entry, runDir, { mysql: server }, database, { signal });
      const text = await server.sql(mysqlInventorySql(database, { updateTimes: false }));
      const rows = text.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
      return parseMysqlInventory(rows, { ms: Date.now() - started });
    } finally {
      await server.sql(`DROP DATABASE IF EXISTS ${q(database)}`).catch(() => undefined);
    }
  }
  if (entry.kind === 'postgresql') {
    // The same path as `restore db`: the kind's RestoreSession on the throwaway server, the
    // accounts from the run's globals export, the database created as it was dumped, then the
    // load with owners as dumped. Any name loads the same (the throwaway cluster's own
    // `postgres` database must not collide with a dump of one).
    const server = await servers.postgresFor(entry.serverVersion ?? '').catch(unavailable);
    const target = 'asb_verify';
    const session = await postgresqlKind
      .openTarget({ loaded: defaultConfig(), log: servers.log, signal }, { host: server.socketDir, port: server.port, user: 'postgres', bin_dir: server.binDir })
      .catch(unavailable);
    try {
      const dump = dumpFileOf(runDir, entry);
      const globals = runManifest(runDir).entries.find((e) => e.kind === 'postgresql' && e.object === 'globals' && e.status === 'ok' && e.path);
      await session.ensureAccounts(target, dump, globals && dumpFileOf(runDir, globals), signal);
      await session.createDatabase(target, dump, signal);
      await session.load(target, dump, signal);
      return parsePgInventory(await server.sql(pgInventorySql(), target), 'snapshot', Date.now() - started);
    } finally {
      await session.dropDatabase(target).catch(() => undefined);
      await session.close();
    }
  }
  throw new Error(`cannot load a ${entry.kind} dump`);
}
