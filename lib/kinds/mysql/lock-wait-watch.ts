import { hexOf, mysqlIdent } from './sql.js';
import { fromHex } from '../../model/inventory.js';
import type { Logger } from '../../log.js';
import type { DumpWatch, LockWait } from '../../model/kind.js';
import { utf8Literal } from './sql.js';

/**
 * A MariaDB dump's lock waits, seen from a connection of ours. mariadb-dump has no option for
 * the session's lock_wait_timeout (it refuses `init-command` in its option file: "unknown
 * variable", exit 7), so the server's default (a day) would apply: the limit is kept here, by
 * ending the dump's own waiting statement (KILL QUERY) once it has waited longer.
 *
 * The dump's session is recognised by what only mariadb-dump sends (its SQL_NO_CACHE SELECT,
 * its `READ /*!32311 LOCAL *\/` LOCK TABLES, its SHOW statements), from our login, in the
 * database it dumps: no other statement is ever killed.
 */

/** A wait shorter than this is normal traffic: not logged, not shown. */
export const WAIT_NOTICE_MS = 5_000;
/** How often the server is asked while the dump runs, and while it waits. */
const POLL_MS = 5_000;
const WAITING_POLL_MS = 2_000;

export type RowsQuery = (sql: string, signal?: AbortSignal) => Promise<string[][]>;

export interface LockWaitWatchOptions {
  readonly database: string;
  readonly limitMs: number;
  /** The config key named in the failure. */
  readonly setting: string;
  /** A connection of ours (opened on first use), rows of tab-separated batch output. */
  readonly query: RowsQuery;
  readonly close: () => Promise<void>;
  readonly log: Logger;
  readonly report: (wait: LockWait | undefined) => void;
}

// mariadb-dump's own statements, byte for byte as it writes them (client/mysqldump.c).
const DUMP_STATEMENTS = ['SELECT /*!40001 SQL\\_NO\\_CACHE */ %', 'LOCK TABLES %READ /*!32311 LOCAL */%', 'SHOW CREATE TABLE %', 'show table status like %', 'SHOW FIELDS FROM %', 'SHOW TRIGGERS LIKE %'];

export function watchLockWaits(given: LockWaitWatchOptions): DumpWatch {
  const { database, limitMs, log } = given;
  // stop() must not wait for a look the server is slow to answer: it ends the look's client.
  const cancel = new AbortController();
  const options: LockWaitWatchOptions = { ...given, query: (sql) => given.query(sql, cancel.signal) };
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let polling: Promise<void> | undefined;
  let current: { id: number; wait: LockWait } | undefined;
  let verdict: string | undefined;
  let failedOnce = false;

  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      polling = poll().then(schedule, (err: unknown) => {
        // The watch never fails a dump: without it only dumps.timeout bounds a wait.
        if (!failedOnce) log.debug(`mysql '${database}': cannot watch the dump's lock waits: ${err instanceof Error ? err.message : String(err)}`);
        failedOnce = true;
        schedule(POLL_MS);
      });
    }, ms);
    timer.unref();
  };

  function ended(): void {
    if (!current) return;
    log.info(`mysql '${database}': the lock wait${current.wait.table ? ` on table ${current.wait.table}` : ''} ended after ${seconds(Date.now() - Date.parse(current.wait.since))}`);
    current = undefined;
    options.report(undefined);
  }

  async function poll(): Promise<number> {
    const waiter = await findWaiter(options);
    if (stopped) return POLL_MS;
    if (!waiter || waiter.ms < Math.min(WAIT_NOTICE_MS, limitMs)) {
      ended();
      // Ask again when a wait seen now would have lasted long enough to be said (or to pass the limit).
      return waiter ? Math.min(WAITING_POLL_MS, Math.min(WAIT_NOTICE_MS, limitMs) - waiter.ms + 50) : POLL_MS;
    }
    let wait = current?.id === waiter.id ? current.wait : undefined;
    if (!wait?.holder) {
      const table = waiter.table ?? (await lockedTable(options));
      const holder = await findHolder(options, waiter.id, table);
      const first = !wait;
      wait = { ...(table ? { table } : {}), since: new Date(Date.now() - waiter.ms).toISOString(), state: waiter.state, ...(holder ? { holder } : {}) };
      current = { id: waiter.id, wait };
      if (first) log.warn(`mysql '${database}': ${lockWaitText(wait)} (the dump gives up after ${options.setting} = ${seconds(limitMs)})`);
      options.report(wait);
    }
    if (waiter.ms >= limitMs) {
      verdict = `gave up after waiting ${seconds(waiter.ms)} (${options.setting}) for ${lockWaitText(wait, false)}`;
      await options.query(`KILL QUERY ${waiter.id}`);
      log.warn(`mysql '${database}': ${verdict}`);
      return POLL_MS;
    }
    return Math.min(WAITING_POLL_MS, limitMs - waiter.ms + 50);
  }

  schedule(Math.min(WAIT_NOTICE_MS, limitMs));
  return {
    get verdict() {
      return verdict;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      cancel.abort();
      await polling?.catch(() => undefined);
      // A dump that ran on once its lock was free may end before the next look.
      if (verdict === undefined) ended();
      else if (current) options.report(undefined);
      await options.close().catch(() => undefined);
    },
  };
}

/** "a lock on table `t` held by session 7 (root@localhost, Query for 6 s: SELECT SLEEP(8))". */
export function lockWaitText(wait: LockWait, waiting = true): string {
  const what = `a lock on ${wait.table ? `table ${wait.table}` : 'a table'}`;
  const h = wait.holder;
  // The caveat last: a summary line cut at 200 characters keeps the table and the session.
  const by = h
    ? `${h.proven ? 'held by' : 'probably held by'} session ${h.id} (${h.user}@${h.host}, ${h.command} for ${h.seconds} s${h.info ? `: ${h.info.slice(0, 120)}` : ''})${h.proven ? '' : ' [a guess: without the metadata_lock_info plugin the server does not say who holds a lock]'}`
    : 'held by a session the server does not name';
  return `${waiting ? `waiting since ${wait.since} for ` : ''}${what} ${by}`;
}

interface Waiter {
  readonly id: number;
  readonly ms: number;
  readonly state: string;
  readonly table?: string;
}

async function findWaiter(o: LockWaitWatchOptions): Promise<Waiter | undefined> {
  const rows = await o.query(
    `SELECT ID, TIME_MS, HEX(STATE), HEX(INFO) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() ` +
      `AND USER = SUBSTRING_INDEX(USER(), '@', 1) AND HEX(DB) = '${hexOf(o.database)}' AND STATE LIKE 'Waiting for table%' ` +
      `AND (${DUMP_STATEMENTS.map((p) => `INFO LIKE BINARY '${p}'`).join(' OR ')}) ORDER BY TIME_MS DESC LIMIT 1`,
  );
  const row = rows[0];
  if (!row) return undefined;
  const info = fromHex(row[3] ?? '');
  // The table a statement names: `FROM \`t\``, `TABLE \`t\``, `LIKE 't'` (LOCK TABLES names all of them).
  const named = /^(?:SELECT .* FROM|SHOW CREATE TABLE|SHOW FIELDS FROM) (`(?:[^`]|``)+`)\s*$/s.exec(info)?.[1] ?? /^(?:show table status like|SHOW TRIGGERS LIKE) '((?:[^'\\]|\\.)*)'/.exec(info)?.[1];
  return { id: Number(row[0]), ms: Number(row[1]), state: fromHex(row[2] ?? ''), ...(named ? { table: named.startsWith('`') ? named : `\`${named}\`` } : {}) };
}

/** LOCK TABLES names every table: the one in use by another session is the one waited for. */
async function lockedTable(o: LockWaitWatchOptions): Promise<string | undefined> {
  const rows = await o.query(`SHOW OPEN TABLES FROM ${mysqlIdent(o.database)} WHERE In_use > 0`);
  const names = rows.map((r) => r[1]).filter((n): n is string => !!n);
  return names.length ? names.map((n) => `\`${n}\``).join(', ') : undefined;
}

async function hasLockInfo(o: LockWaitWatchOptions): Promise<boolean> {
  const rows = await o.query(`SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'METADATA_LOCK_INFO'`);
  return rows[0]?.[0] === '1';
}

/**
 * The session holding the lock: proven by the metadata_lock_info plugin when it is loaded (the
 * server's own list of who holds which metadata lock); otherwise the likeliest one, said as such:
 * another session in that database naming the table, else the one there longest.
 */
async function findHolder(o: LockWaitWatchOptions, waiterId: number, table: string | undefined): Promise<LockWait['holder']> {
  const columns = `SELECT p.ID, HEX(p.USER), HEX(p.HOST), p.COMMAND, p.TIME, HEX(IFNULL(p.INFO, ''))`;
  const tables = (table ?? '').split(', ').map((t) => t.replace(/^`|`$/g, '').replace(/``/g, '`')).filter(Boolean);
  let rows: string[][] = [];
  let proven = false;
  if (await hasLockInfo(o)) {
    const names = tables.length ? ` AND m.TABLE_NAME IN (${tables.map(utf8Literal).join(', ')})` : '';
    rows = await o.query(
      `${columns} FROM information_schema.METADATA_LOCK_INFO m JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID ` +
        `WHERE m.TABLE_SCHEMA = ${utf8Literal(o.database)}${names} AND m.THREAD_ID NOT IN (${waiterId}, CONNECTION_ID()) ` +
        `AND m.LOCK_MODE NOT IN ('MDL_SHARED_READ', 'MDL_SHARED_HIGH_PRIO', 'MDL_SHARED') AND p.STATE NOT LIKE 'Waiting for table%' ORDER BY p.TIME DESC LIMIT 1`,
    );
    proven = rows.length > 0;
  }
  if (!rows.length) {
    const mentions = tables.length ? tables.map((t) => `LOCATE(${utf8Literal(t)}, IFNULL(p.INFO, '')) > 0`).join(' OR ') : '0';
    rows = await o.query(
      `${columns} FROM information_schema.PROCESSLIST p WHERE p.DB = ${utf8Literal(o.database)} AND p.ID NOT IN (${waiterId}, CONNECTION_ID()) ` +
        `AND IFNULL(p.STATE, '') NOT LIKE 'Waiting for table%' AND p.COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Killed') ORDER BY (${mentions}) DESC, p.TIME DESC LIMIT 1`,
    );
  }
  const r = rows[0];
  if (!r) return undefined;
  const info = fromHex(r[5] ?? '');
  return { id: Number(r[0]), user: fromHex(r[1] ?? ''), host: fromHex(r[2] ?? ''), command: r[3] ?? '', seconds: Number(r[4]), ...(info ? { info } : {}), proven };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}


