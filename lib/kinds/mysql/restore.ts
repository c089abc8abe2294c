import { readFile, rm } from 'node:fs/promises';
import { makeTempDir } from '../../private-dir.js';
import { dirname, join } from 'node:path';
import { utf8Literal, mysqlIdent } from './sql.js';
import { cmd } from '../../run/command.js';
import { pipeToFile } from '../../run/pipeline.js';
import { isExecutable, whichSystem } from '../../run/which.js';
import { decompressorCommand } from '../../dumps/compress.js';
import { loadSqlDumpParallel, mapSqlDump, type RowCharset } from './load/parallel.js';
import type { DumpIndex } from './load/dump-index.js';
import { readDumpMap } from './load/dump-map.js';
import { resolveWireTarget, WireSink } from './load/wire.js';
import { unescapeBatch, type MysqlSession } from './session.js';
import type { AccountsRequest, AccountWork, Compression, DatabaseState, DumpFile, RestoreSession } from '../../model/kind.js';
import { prepareMysqlAccounts } from './accounts.js';
import { parseAccount, type AccountKey } from './accounts-parse.js';
import { altersDatabase, propsFromDump, propsOfDetails, retargetIndex } from './database-props.js';
import { RestoreError } from '../../errors.js';
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
  // The dump's map (load/dump-index.ts), read once: its DEFINERs for the accounts, and its
  // statements' places for the parallel load (a grep pass for the DEFINERs alone cost 2.6 s
  // before loading the bench's 1.1 GB database, and the load's own map 1.1 s more).
  // prefetch() starts it beside the restore's sha256 check of the file (0.8 s and 0.4 s for that
  // database, one after the other before).
  let mapped: { readonly path: string; readonly index: Promise<DumpIndex>; readonly stop: AbortController } | undefined;
  const startMap = (dump: DumpFile, signal?: AbortSignal): void => {
    mapped?.stop.abort();
    const stop = new AbortController();
    const stopping = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    // The map written beside the dump at dump time (load/dump-map.ts), else a pass over the dump.
    const index = dump.map
      ? readDumpMap(dump.map).then((index) => {
          s.log.debug('restore: the dump-time map of the dump', { dump: dump.path, map: dump.map!.path, tables: index.segments.filter((x) => x.kind === 'rows').length });
          return index;
        }, (err: unknown) => {
          s.log.warn(`restore: the map beside ${dump.path} cannot be used (${err instanceof Error ? err.message : String(err)}); reading the dump for it instead`);
          return mapSqlDump(dump.path, packing(dump), stopping);
        })
      : mapSqlDump(dump.path, packing(dump), stopping);
    index.catch(() => undefined); // seen where it is awaited
    mapped = { path: dump.path, index, stop };
  };
  const mapOf = (dump: DumpFile, signal?: AbortSignal): Promise<DumpIndex> => {
    if (mapped?.path !== dump.path) startMap(dump, signal);
    return mapped!.index;
  };
  return {
    kind: 'mysql',
    versions: s.versions,
    where: s.cfg.host !== undefined ? `${s.cfg.host}:${s.cfg.port ?? 3306}` : (s.cfg.socket ?? 'the default socket'),
    listDatabases: (signal) => s.listDatabases(signal),
    planDatabase: (database, signal) => s.planDatabase(database, signal),
    planServerWide: (signal) => s.planServerWide(signal),
    async close() {
      if (mapped) {
        mapped.stop.abort();
        await mapped.index.catch(() => undefined);
        mapped = undefined;
      }
      await s.close();
    },
    prefetch: (dump, signal) => startMap(dump, signal),
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
      // The map of the dump (prefetched, or read by ensureAccounts), for the parallel load; one
      // written at dump time is read now when nothing prefetched it (restore site does not). A
      // safety dump loaded back after a failure is another file.
      // Loaded under another name than dumped: its ALTER DATABASE statements are aimed at the new
      // name (mysql-database-props.ts), which takes the map, so the mapped path (one connection or more).
      const renamed = dump.database !== undefined && dump.database !== database ? dump.database : undefined;
      if (mapped?.path !== dump.path && ((dump.map && options.connections > 1) || renamed !== undefined)) startMap(dump, signal);
      const ready = mapped?.path === dump.path ? mapped : undefined;
      if (!ready) mapped?.stop.abort();
      mapped = undefined;
      const args = [
        `--defaults-extra-file=${s.optionFile}`,
        '--batch',
        '--default-character-set=utf8mb4',
        // The client strips comments by default: those inside routine and trigger bodies too.
        '--comments',
        `--max-allowed-packet=${s.cfg.max_allowed_packet}`,
        // One argv word: a name like '-x' or 'a b' is a name here, never an option.
        `--database=${database}`,
      ];
      // A big dump loads near myloader's speed only over several connections (one stream is far
      // slower: docs/performance.md, restore_vs_myloader).
      if (options.connections > 1 || renamed !== undefined) {
        // The rows over protocol connections where they can connect as the client does.
        const wire = await resolveWireTarget(whichSystem('my_print_defaults') ?? sibling(s.client, 'my_print_defaults'), s.optionFile, signal);
        const doing = `loading ${dump.path}`;
        const openRows = 'target' in wire ? (charset: RowCharset) => WireSink.open(wire.target, database, doing, packetBytes(s.cfg.max_allowed_packet), charset) : undefined;
        const mappedIndex = await ready?.index;
        // A file the lexer cannot prove goes through one client as it is: its ALTER DATABASE lines
        // cannot be aimed at the new name, and loaded as they are they would alter the original.
        if (mappedIndex?.serial !== undefined && renamed !== undefined && altersDatabase(mappedIndex, renamed)) {
          throw new RestoreError(
            `cannot load the dump of '${renamed}' under the name '${database}': it sets the database's collation around its routines (ALTER DATABASE \`${renamed}\`), and its statements cannot be proven apart (${mappedIndex.serial}) to aim those at '${database}'; restore it under its own name, or load it by hand`,
            { database },
          );
        }
        const index = mappedIndex && renamed !== undefined ? retargetIndex(mappedIndex, renamed, database) : mappedIndex;
        const result = await loadSqlDumpParallel({ file: dump.path, compression: packing(dump), client: cmd(s.client, args), connections: Math.max(1, options.connections), openRows, signal, secrets: s.secrets, index });
        const why = 'unsupported' in wire ? wire.unsupported : result.protocolRefused;
        if (result.serial !== undefined) s.log.info(`restore of '${database}': the dump loaded through one client as it is (${result.serial})`);
        else if (why !== undefined) s.log.info(`restore of '${database}': rows loaded by ${options.connections} mariadb clients, not protocol connections (${why}); the same result, more CPU`);
        return;
      }
      // One stream needs no map: a prefetch still reading it is stopped.
      ready?.stop.abort();
      await ready?.index.catch(() => undefined);
      const scratch = await makeTempDir('asb-myload-');
      try {
        await pipeToFile([decompressorCommand(packing(dump), dump.path), cmd(s.client, args)], join(scratch, 'out'), { signal, secrets: s.secrets });
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}

/** Reading a restored database's inventory (every table counted), as long as the dump's own may take. */
const INVENTORY_TIMEOUT_MS = 30 * 60_000;

/** "1G", "512M", "65536" → bytes (validated when the session opened). */
export function packetBytes(size: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(size);
  const unit = { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[(m?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'];
  return m ? Number(m[1]) * unit : 1 << 30;
}

/** A tool installed beside the client (a MariaDB under /opt or /usr/local). */
function sibling(client: string, name: string): string | undefined {
  const file = join(dirname(client), name);
  return isExecutable(file) ? file : undefined;
}


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
