import { readFile, rm } from 'node:fs/promises';
import { makeTempDir } from '../../private-dir.js';
import { join } from 'node:path';
import { utf8Literal, mysqlIdent } from './sql.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { decompressorCommand } from '../../dumps/compress.js';
import { openLoader, propsFromDump, propsOfDetails, type DumpIndex } from './load/index.js';
import { unescapeBatch, type MysqlSession } from './session.js';
import type { AccountsRequest, AccountWork, Compression, DatabaseState, DumpFile, RestoreSession } from '../../model/kind.js';
import { prepareMysqlAccounts } from './accounts.js';
import { parseAccount, type AccountKey } from './accounts-parse.js';
import { mysqlInventorySql, parseMysqlInventory } from './inventory.js';

/**
 * The restore half of the MySQL/MariaDB kind. A dump is streamed through the decompressor into
 * the client (kernel pipes, never held in memory), as utf8mb4 with large packets. Before that,
 * the accounts the database needs come back from the users export: a view or procedure whose
 * DEFINER user is missing loads fine and then fails at every use (error 1449).
 */
export interface MysqlRestoreOptions {
  /** Connections loading one dump at once (restore.connections); 1: one client reads the stream. */
  readonly connections: number;
}

export function withMysqlRestore(s: MysqlSession, options: MysqlRestoreOptions = { connections: 1 }): RestoreSession {
  const loader = openLoader({ connections: options.connections, log: s.log });
  const mapOf = (dump: DumpFile, signal?: AbortSignal): Promise<DumpIndex> => loader.mapOf(dump, signal);
  return {
    kind: 'mysql',
    versions: s.versions,
    where: s.cfg.host !== undefined ? `${s.cfg.host}:${s.cfg.port ?? 3306}` : (s.cfg.socket ?? 'the default socket'),
    listDatabases: (signal) => s.listDatabases(signal),
    planDatabase: (database, signal) => s.planDatabase(database, signal),
    planServerWide: (signal) => s.planServerWide(signal),
    async close() {
      await loader.close();
      await s.close();
    },
    prefetch: (dump, signal) => loader.prefetch(dump, signal),
    async databaseState(database, signal): Promise<DatabaseState> {
      const x = utf8Literal(database);
      const rows = await s.query(
        `SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${x}), ` +
          `(SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${x}) + ` +
          `(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${x}) + ` +
          `(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${x})`,
        signal,
      );
      const [exists, objects] = (rows[0] ?? []).map(Number);
      return !exists ? 'missing' : objects ? 'non-empty' : 'empty';
    },
    async createDatabase(database, from, signal) {
      // The dumped database's own character set and collation: its tables say theirs, but its
      // routines' parameters and new tables take the database's.
      let props = propsOfDetails(from?.details);
      let source = 'recorded at dump time';
      if (!props && from) {
        props = propsFromDump(await mapOf(from, signal));
        source = "read from the dump's ALTER DATABASE lines";
      }
      if (props) {
        await s.query(`CREATE DATABASE ${mysqlIdent(database)} CHARACTER SET ${props.charset} COLLATE ${props.collation}`, signal);
        s.log.debug(`restore: '${database}' created with ${props.charset} / ${props.collation} (${source})`);
        return;
      }
      await s.query(`CREATE DATABASE ${mysqlIdent(database)}`, signal);
      if (from) s.log.warn(`restore: the dump of '${from.database ?? database}' does not say its database's character set and collation (a dump from before they were recorded): '${database}' was created with the server's default`);
    },
    async dropDatabase(database, signal) {
      await s.query(`DROP DATABASE IF EXISTS ${mysqlIdent(database)}`, signal);
    },
    async inventory(database, signal) {
      const started = Date.now();
      // COUNT(*) of every table: a large database takes minutes, not the catalog queries' limit.
      const rows = await s.query(mysqlInventorySql(database, { updateTimes: false }), signal, INVENTORY_TIMEOUT_MS);
      return parseMysqlInventory(rows, { ms: Date.now() - started });
    },
    async ensureAccounts(database, dump, accounts, signal) {
      const work = await this.prepareAccounts!({ database, into: database, copyGrants: false, accounts: 'keep' }, dump, accounts, signal);
      await work.beforeLoad();
      await work.afterLoad();
      return [...work.created];
    },
    async prepareAccounts(request: AccountsRequest, dump: DumpFile, accounts: DumpFile | undefined, signal?: AbortSignal): Promise<AccountWork> {
      const exportText = accounts ? await readExport(accounts, signal) : undefined;
      const definers = definersOf(await mapOf(dump, signal));
      return prepareMysqlAccounts((sql, sig) => s.query(sql, sig), exportText, definers, request, unescapeBatch, signal);
    },
    async load(database, dump, signal) {
      await loader.load(database, dump, { client: s.client, optionFile: s.optionFile, maxAllowedPacket: s.cfg.max_allowed_packet, secrets: s.secrets }, signal);
    },
  };
}

/** Reading a restored database's inventory (every table counted), as long as the dump's own may take. */
const INVENTORY_TIMEOUT_MS = 30 * 60_000;

function packing(dump: DumpFile): Compression {
  return dump.compression === 'internal' ? 'none' : dump.compression;
}

async function decompressText(file: DumpFile, out: string, signal?: AbortSignal): Promise<string> {
  await pipeToFile([decompressorCommand(packing(file), file.path)], out, { signal });
  return readFile(out, 'utf8');
}

/** The users export's text (small: one line per account and grant). */
async function readExport(file: DumpFile, signal?: AbortSignal): Promise<string> {
  const scratch = await makeTempDir('asb-myacc-');
  try {
    return await decompressText(file, join(scratch, 'users.sql'), signal);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

const DEFINER = /DEFINER=((?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*')@(?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'))/g;

/** DEFINER=`u`@`h` clauses of the dump's views, routines, triggers and events (its statements, not its rows). */
function definersOf(index: DumpIndex): Set<AccountKey> {
  const found = new Set<AccountKey>();
  for (const seg of index.segments) {
    if (seg.kind !== 'sql') continue;
    for (const m of seg.text.toString('utf8').matchAll(DEFINER)) {
      const key = parseAccount(m[1]!);
      if (key) found.add(key);
    }
  }
  return found;
}
