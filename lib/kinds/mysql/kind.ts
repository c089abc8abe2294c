import { fromHex } from '../../model/inventory.js';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { durationMs, sizeBytes, type MysqlConfig } from '../../config/schema.js';
import type { Logger } from '../../log.js';
import { BackupError, CommandError, ConfigError, MissingDependencyError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import { cmd, errorLine, type Command } from '../../proc/command.js';
import { run } from '../../proc/run.js';
import { openClientSession, type ClientSession } from '../../proc/session.js';
import { largeStdoutBuffer } from '../../proc/stdout-buffer.js';
import { whichSystem } from '../../proc/which.js';
import type { Compression, DumpSpec, InstallSigns, KindContext, RestoreSession, ServerTarget, ServerVersions } from '../../model/kind.js';
import { withMysqlRestore } from './restore.js';
import type { MysqlSession } from './session.js';
import { unescapeBatch } from './session.js';
import { warning, WarningCodes } from '../../warnings.js';
import { installedEvidence } from '../../dumps/installed.js';
import type { LoadedConfig } from '../../config/load.js';
import { underRoot } from '../../config/paths.js';
import { siteInPath } from '../../model/site.js';
import { readlinkSync } from 'node:fs';
import { readTail, tailCheck } from '../../dumps/tail-check.js';
import type { InventoryProbe } from '../../model/inventory.js';
import { InventoryBatcher } from './inventory-batch.js';
import { KeptClient, rowsOf } from './kept-client.js';
import { stringLiteral as literal, utf8Literal } from './sql.js';
import { makeSecretDir } from '../../secret-dir.js';
import { withDumpMap } from './load/index.js';
import { recordAccounts } from './accounts-check.js';
import { watchLockWaits } from './lock-wait-watch.js';
import { explainMysqlFailure } from './dump-failure.js';
import { withBinlogMark, type LockedRead } from './binlog-mark.js';
import { binlogReadable, lockedPosition, serverPosition } from './binlog-probe.js';

export { unescapeBatch, type MysqlSession } from './session.js';

/** Schemas that belong to the server, not to a site. */
const SYSTEM_SCHEMAS = new Set(['information_schema', 'performance_schema', 'mysql', 'sys']);
/** Engines with MVCC snapshots: only these are consistent under --single-transaction. */
const TRANSACTIONAL = new Set(['innodb']);
const QUERY_TIMEOUT_MS = 120_000;
const INVENTORY_TIMEOUT_MS = 30 * 60_000;
/** Inventories wait this long for others to share a client with (inventory-batch.ts). */
const INVENTORY_LINGER_MS = 150;
/**
 * mariadb-dump 10.11 selects the database for --events with the name as escaped for a string
 * literal, so events of a database whose name holds one of these fail the whole dump (1049
 * "Unknown database 'it\'s'"). Measured; routines, triggers and views are not affected.
 */
const EVENTS_UNSAFE_NAME = /['"\\\n\r\0\x1a]/;

/** Should this run dump MariaDB (DatabaseKind.expected)? */
export function expected(ctx: KindContext): string | undefined {
  const enabled = ctx.loaded.config.databases.mysql.enabled;
  return enabled === true ? 'enabled: true' : enabled === false ? undefined : installedEvidence('mysql', MYSQL_SIGNS, ctx.loaded);
}

export const MYSQL_SIGNS: InstallSigns = {
  binaries: ['mariadbd', 'mysqld'],
  extraBinaries: () => ['/usr/libexec/mariadbd', '/usr/libexec/mysqld'],
  units: ['mariadb.service', 'mysql.service', 'mysqld.service'],
  dataDirs: ['/var/lib/mysql/mysql'],
};

/**
 * When the panel cannot say which site owns a database, its data directory can: a symlink into the
 * site's shadow (/var/lib/mysql/<db> → /home/virtual/siteN/shadow/var/lib/mysql/<db>), free to read.
 * Only names that are their own directory name (no @XXXX encoding) are looked up.
 */
export function siteOnDisk(loaded: LoadedConfig, database: string): string | undefined {
  if (!/^[A-Za-z0-9_]+$/.test(database)) return undefined;
  try {
    return siteInPath(readlinkSync(join(underRoot(loaded.paths.root, '/var/lib/mysql'), database)));
  } catch {
    return undefined;
  }
}

export async function open(ctx: KindContext): Promise<MysqlSession | undefined> {
  const cfg = ctx.loaded.config.databases.mysql;
  if (cfg.enabled === false) return undefined;
  return connect(ctx, cfg);
}

/** The configured server, or `target`'s socket/host instead (its credentials when it names them). */
export async function openTarget(ctx: KindContext, target?: ServerTarget): Promise<RestoreSession> {
  const base = ctx.loaded.config.databases.mysql;
  const where = target && (target.socket !== undefined || target.host !== undefined) ? { socket: undefined, host: undefined, port: undefined } : {};
  const picked = target ? Object.fromEntries(Object.entries(target).filter(([k, v]) => v !== undefined && k !== 'bin_dir')) : {};
  const cfg: MysqlConfig = { ...base, ...where, ...picked, enabled: true };
  const session = await connect(ctx, cfg);
  return withMysqlRestore(session!, { connections: ctx.loaded.config.restore.connections });
}

export function mysqlWhere(cfg: MysqlConfig): string {
  return cfg.host !== undefined ? `${cfg.host}:${cfg.port ?? 3306}` : (cfg.socket ?? 'the default socket');
}

async function connect(ctx: KindContext, cfg: MysqlConfig): Promise<MysqlSession | undefined> {
  const log = ctx.log.child({ kind: 'mysql' });
  const client = whichSystem('mariadb') ?? whichSystem('mysql');
  const dumper = whichSystem('mariadb-dump') ?? whichSystem('mysqldump');
  // Only `enabled: false` is off here: under `auto` the plan asked expected() (is a server
  // installed?) first, so missing client tools or a server that does not answer are errors.
  if (!client || !dumper) {
    throw new MissingDependencyError(client ? 'mariadb-dump' : 'mariadb', 'mariadb-client', 'mariadb');
  }
  if (!/^\d+[KMG]?$/i.test(cfg.max_allowed_packet)) {
    throw new ConfigError(`databases.mysql.max_allowed_packet: expected a size like 1G or 512M, got '${cfg.max_allowed_packet}'`, ctx.loaded.file, 'databases.mysql.max_allowed_packet');
  }
  const password = cfg.password_file !== undefined ? await readPassword(cfg.password_file, ctx.loaded.file) : undefined;
  const secrets = password ? [password] : [];
  // The option file holds the password: in memory (a tmpfs), 0600 in a 0700 directory.
  const dir = await makeSecretDir('asb-mysql-');
  const optionFile = join(dir, 'client.cnf');
  await writeFile(optionFile, optionFileText(cfg, password), { mode: 0o600, flag: 'wx' });
  const session = new Session(cfg, log, client, dumper, dir, optionFile, secrets, sizeBytes(ctx.loaded.config.verify.count_rows_max));
  try {
    const server = (await session.query('SELECT VERSION()', ctx.signal))[0]?.[0] ?? '';
    const clientVersion = (await run(cmd(dumper, ['--version']), { timeoutMs: QUERY_TIMEOUT_MS, signal: ctx.signal })).stdout.trim();
    session.versions = { server, client: clientVersion };
    session.binlog = await binlogReadable((sql) => session.query(sql, ctx.signal), log);
    log.debug('mysql: connected', { server, client: clientVersion });
    return session;
  } catch (err) {
    await session.close();
    // The client's own words (ERROR 2002 … socket, ERROR 1045 access denied), not its argv: the
    // cron summary keeps one 200-character line, and the option list used to fill it.
    const why = err instanceof CommandError && err.stderrTail ? errorLine(err.stderrTail) : err instanceof Error ? err.message : String(err);
    const where = mysqlWhere(cfg);
    throw new BackupError(`mysql: cannot connect to the server at ${where} as ${cfg.user}: ${why}`, ExitCode.DUMP_FAILED, { optionFileFrom: cfg.password_file ?? cfg.defaults_file, command: err instanceof CommandError ? err.command : undefined }, { cause: err });
  }
}

class Session implements MysqlSession {
  readonly kind = 'mysql' as const;
  versions: ServerVersions = { server: '', client: '' };
  /** log_bin is on and we may read the position: each dump records where it stands (lib/binlog/). */
  binlog = false;

  constructor(
    readonly cfg: MysqlConfig,
    readonly log: Logger,
    readonly client: string,
    private readonly dumper: string,
    private readonly dir: string,
    readonly optionFile: string,
    readonly secrets: readonly string[],
    countMaxBytes: number,
  ) {
    // COUNT(*) of a few GB can take minutes: its own limit, not the catalog queries' two.
    this.inventories = new InventoryBatcher((sql, signal) => this.inventoryQuery(sql, signal), countMaxBytes, 50, INVENTORY_LINGER_MS);
    this.inventoryClient = new KeptClient(this.batchClient(), secrets, 'reading the inventory');
    this.loadClient = new KeptClient(this.batchClient(), secrets, 'reading Threads_running');
  }

  /** Reads the dump-time inventories, several databases per client. */
  readonly inventories: InventoryBatcher;

  /** Rows of tab-separated batch output. Callers HEX() every free-text column (names may hold tabs). */
  async query(sql: string, signal?: AbortSignal, timeoutMs = QUERY_TIMEOUT_MS): Promise<string[][]> {
    const result = await run(this.batchClient(), { input: sql, signal, secrets: this.secrets, timeoutMs });
    return rowsOf(result.stdout);
  }

  private batchClient(): Command {
    return cmd(this.client, [`--defaults-extra-file=${this.optionFile}`, '--batch', '--skip-column-names', '--default-character-set=utf8mb4']);
  }

  /**
   * The inventories' client, kept open from one batch to the next: a client per batch was a fork
   * of our process, a login and the client's start for every few databases (358 of them over
   * 1,000 tiny databases, counted with strace).
   */
  private readonly inventoryClient: KeptClient;

  private async inventoryQuery(sql: string, signal?: AbortSignal): Promise<string[][]> {
    return this.inventoryClient.rows(sql, INVENTORY_TIMEOUT_MS, signal);
  }

  /**
   * The throttle's client (serverLoad), kept open like the inventories' (not shared with them: a
   * batch of counts can take minutes). Through run() it was a fork of our process once a second:
   * over 300 tiny databases 1.3 s of Node's main thread, each fork holding up every dump's next step.
   */
  private readonly loadClient: KeptClient;

  async listDatabases(signal?: AbortSignal): Promise<string[]> {
    const rows = await this.query('SELECT HEX(SCHEMA_NAME) FROM information_schema.SCHEMATA', signal);
    return rows
      .map((r) => fromHex(r[0] ?? ''))
      .filter((name) => !SYSTEM_SCHEMAS.has(name))
      .sort();
  }

  /**
   * The same rows as planDatabase's query, for every schema at once, fetched by the first
   * planDatabase of the session: one client process instead of one per database before the
   * first dump starts (~10 ms each, hundreds on a hosting server; see npm run bench:dumps).
   * Keyed by the lower-case hex of the schema name. A schema missing from it (created since)
   * or a failed query falls back to the per-database query.
   */
  private catalog?: Promise<Map<string, string[][]> | undefined>;

  private async catalogRows(hex: string, signal?: AbortSignal): Promise<string[][] | undefined> {
    this.catalog ??= this.query(
      `SELECT HEX(SCHEMA_NAME), DEFAULT_CHARACTER_SET_NAME, 'SCHEMA', DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA UNION ALL ` +
        `SELECT HEX(TABLE_SCHEMA), HEX(TABLE_NAME), TABLE_TYPE, IFNULL(ENGINE, '') FROM information_schema.TABLES ` +
        `WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') UNION ALL ` +
        `SELECT HEX(EVENT_SCHEMA), HEX(EVENT_NAME), 'EVENT', '' FROM information_schema.EVENTS`,
      signal,
    ).then(
      (rows) => {
        const bySchema = new Map<string, string[][]>();
        for (const row of rows) {
          const key = (row[0] ?? '').toLowerCase();
          const list = bySchema.get(key) ?? [];
          bySchema.set(key, list);
          list.push(row);
        }
        return bySchema;
      },
      () => undefined,
    );
    return (await this.catalog)?.get(hex);
  }

  async planDatabase(database: string, signal?: AbortSignal): Promise<DumpSpec> {
    const hex = Buffer.from(database, 'utf8').toString('hex');
    // The name travels as a literal (utf8Literal: no quoting, the server looks up only this
    // schema); the HEX() check drops case-insensitive near-misses.
    const rows =
      (await this.catalogRows(hex, signal)) ??
      (await this.query(
        `SELECT HEX(SCHEMA_NAME), DEFAULT_CHARACTER_SET_NAME, 'SCHEMA', DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA ` +
          `WHERE SCHEMA_NAME = ${utf8Literal(database)} UNION ALL ` +
          `SELECT HEX(TABLE_SCHEMA), HEX(TABLE_NAME), TABLE_TYPE, IFNULL(ENGINE, '') FROM information_schema.TABLES ` +
          `WHERE TABLE_SCHEMA = ${utf8Literal(database)} UNION ALL ` +
          `SELECT HEX(EVENT_SCHEMA), HEX(EVENT_NAME), 'EVENT', '' FROM information_schema.EVENTS ` +
          `WHERE EVENT_SCHEMA = ${utf8Literal(database)}`,
        signal,
      ));
    const engines: Record<string, number> = {};
    const nonTransactional: string[] = [];
    let tables = 0;
    let views = 0;
    let events = 0;
    // The database's own character set and collation, for the restore's CREATE DATABASE: the
    // dump (no --databases) has no CREATE DATABASE to carry them.
    let props: { charset: string; collation: string } | undefined;
    for (const [schemaHex, nameHex, type, engine] of rows) {
      if (schemaHex?.toLowerCase() !== hex) continue;
      if (type === 'SCHEMA') {
        if (nameHex && engine) props = { charset: nameHex, collation: engine };
        continue;
      }
      if (type === 'EVENT') {
        events++;
        continue;
      }
      if (type === 'VIEW') {
        views++;
        continue;
      }
      // BASE TABLE, SEQUENCE and SYSTEM VERSIONED tables all hold data.
      tables++;
      const e = engine || 'unknown';
      engines[e] = (engines[e] ?? 0) + 1;
      if (!TRANSACTIONAL.has(e.toLowerCase())) nonTransactional.push(fromHex(nameHex ?? ''));
    }
    // holland's rule: a snapshot is consistent only if every table is transactional; otherwise
    // LOCK TABLES (per database) is the only way to keep MyISAM/Aria tables still while dumping.
    const lockMode = nonTransactional.length === 0 ? 'single-transaction' : 'lock-tables';
    const lockArgs = lockMode === 'single-transaction' ? ['--single-transaction', '--skip-lock-tables'] : ['--lock-tables'];
    // The snapshot's binlog position as a comment in the dump (mysql-binlog-mark.ts: no global lock with --single-transaction).
    if (this.binlog && lockMode === 'single-transaction') lockArgs.push('--master-data=2');
    const eventsSkipped = events > 0 && EVENTS_UNSAFE_NAME.test(database);
    const eventsMessage = `mysql ${JSON.stringify(database)}: ${events} event(s) not in the dump (mariadb-dump cannot dump events of a database whose name holds quotes, backslashes or line breaks): recreate them by hand after a restore`;
    // Losing the events beats losing the whole database; the warning goes into the manifest
    // entry and the run state (status WARNING, cron summary), not only into the log.
    if (eventsSkipped) this.log.warn(eventsMessage, { database });
    const command = cmd(this.dumper, [
      `--defaults-extra-file=${this.optionFile}`,
      ...lockArgs,
      '--routines',
      eventsSkipped ? '--skip-events' : '--events',
      '--triggers',
      '--hex-blob',
      // System-versioned tables with their history rows (row_start/row_end kept; the dump sets
      // system_versioning_insert_history for them): without it only the current rows come back.
      ...(dumpsHistory(this.versions) ? ['--dump-history'] : []),
      `--max-allowed-packet=${this.cfg.max_allowed_packet}`,
      '--default-character-set=utf8mb4',
      // No --databases: the dump carries no CREATE DATABASE/USE, so it loads into any name.
      // '--' ends the options, so a database called '-x' or '--help' is a name, not an option.
      '--',
      database,
    ], { env: largeStdoutBuffer() }); // 1 MiB writes: fewer, larger reads for the streaming check
    const spec = this.spec(database, 'database', command, lockMode, {
      ...props,
      engines,
      tables,
      views,
      events,
      ...(eventsSkipped ? { eventsSkipped: events } : {}),
      nonTransactionalTables: nonTransactional.slice(0, 50),
    });
    const withInventory: DumpSpec = {
      ...spec,
      inventory: async () => this.inventoryProbe(database, command, eventsSkipped ? ['events'] : []),
      watch: (report) => this.watchLocks(database, report),
      explainFailure: explainMysqlFailure,
    };
    if (!eventsSkipped) return withInventory;
    return { ...withInventory, warnings: [warning(WarningCodes.EVENTS_SKIPPED, eventsMessage, { kind: 'mysql', database })] };
  }

  /** The dump's lock waits, bounded by lock_wait_timeout (lock-wait-watch.ts); its client opens on the first look. */
  private watchLocks(database: string, report: Parameters<NonNullable<DumpSpec['watch']>>[0]): ReturnType<NonNullable<DumpSpec['watch']>> {
    let client: ClientSession | undefined;
    const command = this.batchClient();
    return watchLockWaits({
      database,
      limitMs: durationMs(this.cfg.lock_wait_timeout),
      setting: 'databases.mysql.lock_wait_timeout',
      log: this.log,
      report,
      query: async (sql, signal) => {
        client ??= openClientSession({ ...command, args: [...command.args, '--unbuffered'] }, (token) => `SELECT '${token}';`, { secrets: this.secrets });
        try {
          return rowsOf(await client.request(`${sql};\n`, signal ? AbortSignal.any([signal, AbortSignal.timeout(QUERY_TIMEOUT_MS)]) : AbortSignal.timeout(QUERY_TIMEOUT_MS)));
        } catch (err) {
          await client.close().catch(() => undefined);
          client = undefined;
          throw err;
        }
      },
      close: async () => client?.close(),
    });
  }

  /** Read beside the dump, after it (see mysql-inventory.ts: why not inside its snapshot). */
  private inventoryProbe(database: string, command: Command, skipped: string[]): InventoryProbe {
    // Opened right before its dump starts: dumps finishing close together share one client
    // (inventory-batch.ts), and a read waits for company only while another dump runs.
    const ticket = this.inventories.expect();
    return {
      command,
      read: (dumpStartedAt: Date, signal?: AbortSignal) => ticket.read({ database, dumpStartedAt, skipped }, signal),
      close: async () => ticket.cancel(),
    };
  }

  async planServerWide(signal?: AbortSignal): Promise<DumpSpec[]> {
    if (!this.cfg.dump_users) return [];
    const mariadb = /mariadb/i.test(this.versions.server) && /mariadb/i.test(this.versions.client);
    // The accounts as the server says them now, for verify to compare a restore's with.
    // MySQL's mysql.user has no is_role: there the list is not recorded (verify then skips it).
    const accounts = await recordAccounts((sql, sig) => this.query(sql, sig), unescapeBatch, signal).catch((err: unknown) => {
      this.log.debug(`mysql: the accounts were not recorded for verify: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    });
    if (!mariadb) {
      const spec = await this.planUsersWithShowGrants(signal);
      return [{ ...spec, details: { ...spec.details, ...(accounts ? { accounts } : {}) } }];
    }
    // --system=users writes CREATE USER + GRANT + roles from mysql.global_priv; --insert-ignore
    // turns CREATE USER into CREATE USER IF NOT EXISTS so a restore onto a server that already
    // has root@localhost does not stop at the first statement.
    const command = cmd(this.dumper, [
      `--defaults-extra-file=${this.optionFile}`,
      '--system=users',
      '--insert-ignore',
      '--default-character-set=utf8mb4',
    ]);
    return [this.spec(null, 'users', command, 'none', { method: 'mariadb-dump --system=users', ...(accounts ? { accounts } : {}) })];
  }

  async planUsersWithShowGrants(signal?: AbortSignal): Promise<DumpSpec> {
    // A DumpSpec is one command writing stdout, but SHOW GRANTS rows carry no ';' and cannot be
    // post-processed in SQL. So the statements are collected now, joined here, written to a 0600
    // file in our private directory, and the "dump" is `cat` of that file.
    const mysql8 = !/mariadb/i.test(this.versions.server);
    const users = await this.query('SELECT HEX(User), HEX(Host) FROM mysql.user ORDER BY User, Host', signal);
    const SEP = '--asb-next-user--';
    const script = [
      "SET SESSION sql_mode = ''", // so backslash escaping in the literals below is what we wrote
      ...(mysql8 ? ['/*!80017 SET SESSION print_identified_with_as_hex = 1 */'] : []),
      ...users.map(([u, h]) => {
        const account = `${literal(fromHex(u ?? ''))}@${literal(fromHex(h ?? ''))}`;
        return `SHOW CREATE USER ${account}; SHOW GRANTS FOR ${account}; SELECT '${SEP}'`;
      }),
    ].join(';\n');
    const rows = users.length ? await this.query(script, signal) : [];
    const statements = rows
      .map((r) => unescapeBatch(r.join('\t')))
      .filter((s) => s !== SEP)
      .map((s) => s.replace(/^CREATE USER (?!IF NOT EXISTS)/, 'CREATE USER IF NOT EXISTS ') + ';');
    const file = join(this.dir, 'users.sql');
    const text = ['-- users and grants via SHOW CREATE USER / SHOW GRANTS', ...statements, `-- Dump completed on ${new Date().toISOString()}`, ''].join('\n');
    await writeFile(file, text, { mode: 0o600 });
    const cat = whichSystem('cat');
    if (!cat) throw new MissingDependencyError('cat', 'coreutils', 'coreutils');
    return this.spec(null, 'users', cmd(cat, ['--', file]), 'none', { method: 'SHOW CREATE USER + SHOW GRANTS', users: users.length });
  }

  async serverLoad(signal?: AbortSignal): Promise<number | undefined> {
    const rows = await this.loadClient.rows("SHOW GLOBAL STATUS LIKE 'Threads_running';", QUERY_TIMEOUT_MS, signal);
    const n = Number(rows[0]?.[1]);
    // Our own SHOW STATUS is one of the running threads.
    return Number.isFinite(n) ? Math.max(0, n - 1) : undefined;
  }

  async close(): Promise<void> {
    await Promise.all([this.inventoryClient.close(), this.loadClient.close()]);
    await rm(this.dir, { recursive: true, force: true });
  }

  private spec(database: string | null, object: 'database' | 'users', command: Command, lockMode: DumpSpec['lockMode'], details: Record<string, unknown>): DumpSpec {
    const secrets = this.secrets;
    return {
      kind: 'mysql',
      database,
      object,
      command,
      format: 'sql',
      extension: '.sql',
      compressible: true,
      lockMode,
      secrets,
      details,
      checkFile: (file: string, compression: Compression, signal?: AbortSignal) => verifySqlDump(file, compression, signal),
      // A database's dump also gets its restore's map, built as it streams by (load/dump-map.ts).
      // Not for one known small: its map would be under MAP_MIN_BYTES, and indexing 1,000 tiny
      // dumps cost 0.3 s of Node's main thread.
      streamCheck: (options) => {
        const check = object === 'database' && options?.sidecar !== false ? withDumpMap(tailCheck(checkSqlTrailer)) : tailCheck(checkSqlTrailer);
        if (!this.binlog || object !== 'database' || database === null) return check;
        const readLocked: LockedRead | undefined = lockMode === 'lock-tables' ? (signal) => lockedPosition((sql) => this.query(sql, signal), database) : undefined;
        return withBinlogMark(check, { snapshot: lockMode === 'single-transaction', readLocked, readNow: () => serverPosition((sql) => this.query(sql)) });
      },
    };
  }
}

/** A mysqldump/mariadb-dump file is complete only if it ends with the `-- Dump completed` trailer. */
export async function verifySqlDump(file: string, compression: Compression, signal?: AbortSignal): Promise<void> {
  checkSqlTrailer(await readTail(file, compression, 4096, signal), file, compression);
}

function checkSqlTrailer(tailText: string, file: string, compression: Compression): void {
  if (!/(^|\n)-- Dump completed[^\n]*\s*$/.test(tailText)) {
    const last = tailText.trimEnd().split('\n').slice(-3).join('\n').slice(-300);
    throw new BackupError(`${file}: incomplete MySQL dump: no '-- Dump completed' trailer at the end`, ExitCode.DUMP_FAILED, { file, compression, lastLines: last });
  }
}

/**
 * The option file all our commands read first. With password_file, it holds the credentials.
 * Otherwise it !includes defaults_file (e.g. /root/.my.cnf, ApisCP's root credentials) so the
 * password is never copied; later lines win, so: config user < defaults_file < socket/host/port.
 */
function optionFileText(cfg: MysqlConfig, password: string | undefined): string {
  const lines = ['[client]', `user=${optionValue(cfg.user)}`];
  if (password !== undefined) lines.push(`password=${optionValue(password)}`);
  else if (existsSync(cfg.defaults_file)) lines.push(`!include ${cfg.defaults_file}`, '[client]');
  if (cfg.socket !== undefined) lines.push(`socket=${optionValue(cfg.socket)}`);
  if (cfg.host !== undefined) lines.push(`host=${optionValue(cfg.host)}`);
  if (cfg.port !== undefined) lines.push(`port=${cfg.port}`);
  return lines.join('\n') + '\n';
}

/** Double-quoted option value; the option parser understands these escapes inside quotes. */
function optionValue(value: string): string {
  const escaped = value.replace(/[\\"\n\r\t]/g, (c) => ({ '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' })[c] ?? c);
  return `"${escaped}"`;
}

async function readPassword(file: string, configFile: string | undefined): Promise<string> {
  try {
    // One trailing newline is the editor's, not the password's.
    return (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError(`databases.mysql.password_file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, configFile, 'databases.mysql.password_file');
  }
}


/**
 * mariadb-dump has --dump-history from 10.11, and a server before 10.11 cannot take history rows
 * back (no system_versioning_insert_history). Works with --single-transaction (one snapshot).
 */
export function dumpsHistory(versions: ServerVersions): boolean {
  const at = (text: string, re: RegExp): number[] | undefined => re.exec(text)?.slice(1, 3).map(Number);
  const client = at(versions.client, /Distrib (\d+)\.(\d+)[^,]*MariaDB/i) ?? at(versions.client, /from (\d+)\.(\d+)[^,]*MariaDB/i);
  const server = at(versions.server, /^(\d+)\.(\d+)\.\d+-MariaDB/i);
  const atLeast = (v: number[] | undefined): boolean => !!v && (v[0]! > 10 || (v[0] === 10 && v[1]! >= 11));
  return atLeast(client) && atLeast(server);
}
