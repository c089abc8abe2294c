import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { utf8Literal } from './mysql-literal.js';
import { cmd } from '../run/command.js';
import { pipeToFile } from '../run/pipeline.js';
import { isExecutable, whichSystem } from '../run/which.js';
import { decompressorCommand } from './compress.js';
import { loadSqlDumpParallel, mapSqlDump, type RowCharset } from './mysql-load.js';
import type { DumpIndex } from './mysql-dump-index.js';
import { readDumpMap } from './mysql-dump-map.js';
import { resolveWireTarget, WireSink } from './mysql-wire.js';
import type { MysqlSession } from './mysql.js';
import type { Compression, DatabaseState, DumpFile, RestoreSession } from '../model/kind.js';

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
  // The dump's map (mysql-dump-index.ts), read once: its DEFINERs for the accounts, and its
  // statements' places for the parallel load (a grep pass for the DEFINERs alone cost 2.6 s
  // before loading the bench's 1.1 GB database, and the load's own map 1.1 s more).
  // prefetch() starts it beside the restore's sha256 check of the file (0.8 s and 0.4 s for that
  // database, one after the other before).
  let mapped: { readonly path: string; readonly index: Promise<DumpIndex>; readonly stop: AbortController } | undefined;
  const startMap = (dump: DumpFile, signal?: AbortSignal): void => {
    mapped?.stop.abort();
    const stop = new AbortController();
    const stopping = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    // The map written beside the dump at dump time (mysql-dump-map.ts), else a pass over the dump.
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
    async createDatabase(database, _from, signal) {
      await s.query(`CREATE DATABASE ${ident(database)} CHARACTER SET utf8mb4`, signal);
    },
    async dropDatabase(database, signal) {
      await s.query(`DROP DATABASE IF EXISTS ${ident(database)}`, signal);
    },
    async ensureAccounts(database, dump, accounts, signal) {
      if (!accounts) return [];
      const scratch = await mkdtemp(join(tmpdir(), 'asb-myacc-'));
      try {
        const exportText = await decompressText(accounts, join(scratch, 'users.sql'), signal);
        const definers = definersOf(await mapOf(dump, signal));
        const existing = new Set((await s.query('SELECT HEX(User), HEX(Host) FROM mysql.user', signal)).map(([u, h]) => accountKey(hexText(u), hexText(h))));
        const plan = accountStatements(exportText, database, definers, existing);
        if (plan.statements.length) await s.query(plan.statements.join('\n'), signal);
        return plan.created;
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
    async load(database, dump, signal) {
      // The map of the dump (prefetched, or read by ensureAccounts), for the parallel load; one
      // written at dump time is read now when nothing prefetched it (restore site does not). A
      // safety dump loaded back after a failure is another file.
      if (mapped?.path !== dump.path && dump.map && options.connections > 1) startMap(dump, signal);
      const ready = mapped?.path === dump.path ? mapped : undefined;
      if (!ready) mapped?.stop.abort();
      mapped = undefined;
      const args = [
        `--defaults-extra-file=${s.optionFile}`,
        '--batch',
        '--default-character-set=utf8mb4',
        `--max-allowed-packet=${s.cfg.max_allowed_packet}`,
        // One argv word: a name like '-x' or 'a b' is a name here, never an option.
        `--database=${database}`,
      ];
      // A big dump loads near myloader's speed only over several connections (a 1.1 GB database:
      // 24.8 s with 2, against 37.5 s with one stream and 19.7 s for myloader -t 2; bench:dumps 2026-12-03).
      if (options.connections > 1) {
        // The rows over protocol connections where they can connect as the client does.
        const wire = await resolveWireTarget(whichSystem('my_print_defaults') ?? sibling(s.client, 'my_print_defaults'), s.optionFile, signal);
        const doing = `loading ${dump.path}`;
        const openRows = 'target' in wire ? (charset: RowCharset) => WireSink.open(wire.target, database, doing, packetBytes(s.cfg.max_allowed_packet), charset) : undefined;
        const index = await ready?.index;
        const result = await loadSqlDumpParallel({ file: dump.path, compression: packing(dump), client: cmd(s.client, args), connections: options.connections, openRows, signal, secrets: s.secrets, index });
        const why = 'unsupported' in wire ? wire.unsupported : result.protocolRefused;
        if (why !== undefined) s.log.info(`restore of '${database}': rows loaded by ${options.connections} mariadb clients, not protocol connections (${why}); the same result, more CPU`);
        return;
      }
      // One stream needs no map: a prefetch still reading it is stopped.
      ready?.stop.abort();
      await ready?.index.catch(() => undefined);
      const scratch = await mkdtemp(join(tmpdir(), 'asb-myload-'));
      try {
        await pipeToFile([decompressorCommand(packing(dump), dump.path), cmd(s.client, args)], join(scratch, 'out'), { signal, secrets: s.secrets });
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    },
  };
}

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

export function ident(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}

function hexText(hex: string | undefined): string {
  return Buffer.from(hex ?? '', 'hex').toString('utf8');
}

function packing(dump: DumpFile): Compression {
  return dump.compression === 'internal' ? 'none' : dump.compression;
}

async function decompressText(file: DumpFile, out: string, signal?: AbortSignal): Promise<string> {
  await pipeToFile([decompressorCommand(packing(file), file.path)], out, { signal });
  return readFile(out, 'utf8');
}

const ACCOUNT_PART = "(?:`(?:[^`]|``)*`|'(?:[^'\\\\]|\\\\.|'')*')";
const ACCOUNT = `${ACCOUNT_PART}@${ACCOUNT_PART}`;

/** DEFINER=`u`@`h` clauses of the dump's views, routines, triggers and events (its statements, not its rows). */
function definersOf(index: DumpIndex): Set<string> {
  const found = new Set<string>();
  const definer = new RegExp(`DEFINER=(${ACCOUNT})`, 'g');
  for (const seg of index.segments) {
    if (seg.kind !== 'sql') continue;
    for (const m of seg.text.toString('utf8').matchAll(definer)) {
      const key = parseAccount(m[1]!);
      if (key) found.add(key);
    }
  }
  return found;
}

/** "user\0host" for `u`@`h` or 'u'@'h'. */
function parseAccount(text: string): string | undefined {
  const m = new RegExp(`^(${ACCOUNT_PART})@(${ACCOUNT_PART})`).exec(text.trim());
  return m ? accountKey(unquote(m[1]!), unquote(m[2]!)) : undefined;
}

function accountKey(user: string, host: string): string {
  return `${user}\0${host}`;
}

function unquote(q: string): string {
  if (q.startsWith('`')) return q.slice(1, -1).replace(/``/g, '`');
  return q.slice(1, -1).replace(/''/g, "'").replace(/\\(.)/g, '$1');
}

/** `'u'@'h'` for messages. */
export function showAccount(key: string): string {
  const [u, h] = key.split('\0');
  return `'${u}'@'${h}'`;
}

interface ExportLine {
  readonly account: string;
  readonly create: boolean;
  /** The database (or LIKE pattern) a GRANT line is about; undefined for *.* and CREATE. */
  readonly on?: string;
  readonly sql: string;
}

/** The account lines of a users export (`mariadb-dump --system=users` or our SHOW GRANTS form). */
function parseExport(text: string): ExportLine[] {
  const out: ExportLine[] = [];
  const create = new RegExp(`^CREATE USER (?:IF NOT EXISTS )?(${ACCOUNT})`);
  const grant = new RegExp(`^GRANT (?!${ACCOUNT_PART} TO|[A-Za-z_]+ TO CURRENT_USER).*? ON (?:(${ACCOUNT_PART}|\\*)\\.(?:${ACCOUNT_PART}|\\*)|PROCEDURE \\S+|FUNCTION \\S+) TO (${ACCOUNT})`);
  for (const line of text.split('\n')) {
    let m = create.exec(line);
    if (m) {
      const account = parseAccount(m[1]!);
      if (account) out.push({ account, create: true, sql: line });
      continue;
    }
    m = grant.exec(line);
    if (m && !/ ON ``@/.test(line)) {
      const account = parseAccount(m[2]!);
      const db = m[1] && m[1] !== '*' ? unquote(m[1]) : undefined;
      if (account) out.push({ account, create: false, on: db, sql: line });
    }
  }
  return out;
}

/** A grant's database, which may be a LIKE pattern with \_ and \% escapes, covers `database`? */
function covers(pattern: string, database: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '_') re += '.';
    else if (c === '%') re += '.*';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 'su').test(database);
}

const escapeRe = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * What to run: for every account the database needs (grants on it, DEFINERs) that the server
 * lacks, its CREATE USER and all its grants; for accounts that exist, only the grants on this
 * database (never their password or global privileges: the admin may have changed those since).
 */
export function accountStatements(exportText: string, database: string, definers: ReadonlySet<string>, existing: ReadonlySet<string>): { statements: string[]; created: string[] } {
  const lines = parseExport(exportText);
  const needed = new Set<string>(definers);
  for (const l of lines) if (l.on !== undefined && covers(l.on, database)) needed.add(l.account);
  const statements: string[] = [];
  const created: string[] = [];
  for (const account of needed) {
    const mine = lines.filter((l) => l.account === account);
    if (!existing.has(account)) {
      if (!mine.some((l) => l.create)) continue; // not in the export: the load reports what is missing
      statements.push(...mine.map((l) => l.sql));
      created.push(showAccount(account));
    } else {
      statements.push(...mine.filter((l) => l.on !== undefined && covers(l.on, database)).map((l) => l.sql));
    }
  }
  return { statements, created };
}
