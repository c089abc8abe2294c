import type { Inventory } from '../model/inventory.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { ManifestEntry } from '../model/manifest.js';
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
