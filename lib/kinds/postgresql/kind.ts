import { fromHex, hexOf } from './sql.js';
import { existsSync, statSync } from 'node:fs';
import { makeTempDir } from '../../private-dir.js';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { durationMs, sizeBytes, type PostgresqlConfig } from '../../config/schema.js';
import { BackupError, CommandError, ConfigError, MissingDependencyError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import { cmd, type Command } from '../../proc/command.js';
import { pipeToFile } from '../../proc/pipeline.js';
import { run } from '../../proc/run.js';
import { isExecutable } from '../../proc/which.js';
import { osUser } from '../../os-user.js';
import { findPgTool, pgBinDirs } from '../../throwaway/postgres-bin.js';
import type { Compression, DatabaseSession, InstallSigns, DumpSpec, KindContext, RestoreSession, ServerTarget } from '../../model/kind.js';
import { withPostgresRestore } from './restore.js';
import type { PgSession, PgTool } from './session.js';
import { decompressorCommand } from '../../dumps/compress.js';
import { installedEvidence } from '../../dumps/installed.js';
import { readTail } from '../../dumps/tail-check.js';
import { openPgProbe, PSQL_ARGS } from './inventory.js';
import { parseRecordedRoles, ROLES_SQL } from './accounts.js';

export type { PgSession, PgTool } from './session.js';

/** "15" for 150004; "9.6" for 90624 (before 10 the major had two parts). */
export function majorOf(versionNum: number): string {
  return versionNum >= 100000 ? String(Math.floor(versionNum / 10000)) : `${Math.floor(versionNum / 10000)}.${Math.floor(versionNum / 100) % 100}`;
}

const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/run/postgresql', '/tmp'];
const QUERY_TIMEOUT_MS = 60_000;

/** How every tool reaches the server: all through the environment, so argv holds no names or secrets. */
interface Connection {
  readonly env: Record<string, string>;
  readonly uid?: number;
  readonly gid?: number;
  readonly where: string;
}

function connection(cfg: PostgresqlConfig): Connection {
  const port = cfg.port ?? 5432;
  // libpq's compiled-in socket directory differs between Debian and PGDG: look for the socket file.
  const host = cfg.host ?? DEFAULT_SOCKET_DIRS.find((d) => existsSync(join(d, `.s.PGSQL.${port}`))) ?? DEFAULT_SOCKET_DIRS[0]!;
  const env: Record<string, string> = {
    PGHOST: host,
    PGUSER: cfg.user,
    PGCONNECT_TIMEOUT: '10',
    PGAPPNAME: 'apiscp-backup',
  };
  if (cfg.port !== undefined) env.PGPORT = String(cfg.port);
  if (cfg.password_file) {
    if (!existsSync(cfg.password_file)) throw new ConfigError(`databases.postgresql.password_file ${cfg.password_file}: no such file`, undefined, 'databases.postgresql.password_file');
    env.PGPASSFILE = cfg.password_file;
  }
  const where = `${host}:${port}`;
  // Peer authentication maps the OS user to the role: root can only be `postgres` by becoming it.
  const local = host.startsWith('/') || host.startsWith('@');
  if (local && cfg.user === 'postgres' && process.getuid?.() === 0) {
    const pg = osUser('postgres');
    if (pg) return { env: { ...env, HOME: pg.home }, uid: pg.uid, gid: pg.gid, where };
  }
  return { env, where };
}

function toolCommand(conn: Connection, file: string, args: string[], database?: string): Command {
  // A database name on argv is parsed as a conninfo string when it contains `=`; PGDATABASE is not.
  const env = database === undefined ? conn.env : { ...conn.env, PGDATABASE: database };
  return cmd(file, args, { env, uid: conn.uid, gid: conn.gid, cwd: '/' });
}

async function query(conn: Connection, psql: string, database: string, sql: string, signal?: AbortSignal): Promise<string> {
  const c = toolCommand(conn, psql, ['-X', '-At', '--no-password', '-v', 'ON_ERROR_STOP=1', '-c', sql], database);
  return (await run(c, { signal, timeoutMs: QUERY_TIMEOUT_MS })).stdout;
}

function corrupt(file: string, why: string, cause?: unknown): BackupError {
  return new BackupError(`${file}: PostgreSQL dump failed verification: ${why}`, ExitCode.DUMP_FAILED, { file }, { cause });
}

/**
 * `pg_restore --list` reads only the header and table of contents, and passes a file cut off in
 * the data (we tried): a second pass writes the whole restore script to /dev/null, reading every
 * data block. Runs as root: the file is root's 0600 and no server is involved.
 */
async function verifyCustom(pgRestore: string, file: string, compression: Compression, signal?: AbortSignal): Promise<void> {
  const passes = [['--list'], ['--file=/dev/null']];
  const packed = compression === 'none' ? undefined : compression;
  const scratch = packed && (await makeTempDir('apiscp-pgverify-'));
  try {
    for (const [i, args] of passes.entries()) {
      // pg_restore reads a compressed dump from stdin; its (empty or TOC) output goes to scratch.
      if (!packed || !scratch) await run(cmd(pgRestore, [...args, '--', file]), { signal });
      else await pipeToFile([decompressorCommand(packed, file), cmd(pgRestore, args)], join(scratch, `out${i}`), { signal });
    }
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw corrupt(file, detail, err);
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

const TRAILER = 'PostgreSQL database cluster dump complete';

/**
 * pg_dump --lock-wait-timeout sets statement_timeout around its LOCK TABLE statements, so the
 * server says only "canceling statement due to statement timeout"; pg_dump adds the query
 * ("Query was: LOCK TABLE public.t IN ACCESS SHARE MODE"), which names the table.
 */
export function explainLockTimeout(stderr: string, limit: string | number): { message: string } | undefined {
  if (!/canceling statement due to (?:statement|lock) timeout/.test(stderr)) return undefined;
  const table = /Query was: LOCK TABLE (.+?) IN ACCESS SHARE MODE/.exec(stderr)?.[1];
  if (!table && !/LOCK TABLE/.test(stderr)) return undefined;
  return {
    message: `pg_dump gave up after waiting ${limit} (databases.postgresql.lock_wait_timeout) for a lock on ${table ? `table ${table}` : 'a table'}: another session holds it exclusively (an ALTER TABLE, LOCK TABLE, VACUUM FULL or REINDEX)`,
  };
}

export class PostgresSession implements PgSession {
  readonly kind = 'postgresql' as const;
  constructor(
    readonly versions: { server: string; client: string },
    private readonly conn: Connection,
    private readonly tools: Record<PgTool, string>,
    readonly maintenanceDb: string,
    private readonly cfg: PostgresqlConfig,
    private readonly countMaxBytes: number,
  ) {}

  get where(): string {
    return this.conn.where;
  }

  /** psql -At output of `sql` in `database` (ON_ERROR_STOP). */
  sql(database: string, sql: string, signal?: AbortSignal): Promise<string> {
    return query(this.conn, this.tools.psql, database, sql, signal);
  }

  /** The absolute path of one of the server major version's own tools (for work without a server). */
  toolPath(tool: PgTool): string {
    return this.tools[tool];
  }

  /** One of the server major version's own tools, connected through the environment. */
  tool(tool: PgTool, args: string[], database?: string): Command {
    return toolCommand(this.conn, this.tools[tool], args, database);
  }

  async listDatabases(signal?: AbortSignal): Promise<string[]> {
    // Hex keeps names with newlines, quotes or any encoding intact through psql's text output.
    const sql = `SELECT ${hexOf('datname')} FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname`;
    const out = await query(this.conn, this.tools.psql, this.maintenanceDb, sql, signal);
    return out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((hex) => fromHex(hex.trim()));
  }

  async planDatabase(database: string): Promise<DumpSpec> {
    const pgRestore = this.tools.pgRestore;
    // -Fc: compressed, restorable selectively and in parallel; one snapshot for the whole dump.
    // --create: the archive holds the database itself (encoding, locale, owner, its privileges,
    // comment and settings; pg_dump 15 writes these entries into custom archives anyway, --create
    // makes sure of it). A restore under any name applies them; pg_restore without -C skips
    // them, so the content loads the same either way.
    const command = toolCommand(this.conn, this.tools.pgDump, ['--format=custom', '--create', '--no-password', `--lock-wait-timeout=${durationMs(this.cfg.lock_wait_timeout)}`], database);
    return {
      kind: 'postgresql',
      database,
      object: 'database',
      command,
      inventory: (signal) => openPgProbe(toolCommand(this.conn, this.tools.psql, PSQL_ARGS, database), command, this.countMaxBytes, signal),
      format: 'custom',
      extension: '.dump',
      compressible: false,
      lockMode: 'snapshot',
      checkFile: (file, compression, signal) => verifyCustom(pgRestore, file, compression, signal),
      details: { serverVersion: this.versions.server, clientVersion: this.versions.client },
      explainFailure: (stderr) => explainLockTimeout(stderr, this.cfg.lock_wait_timeout),
    };
  }

  async planServerWide(signal?: AbortSignal): Promise<DumpSpec[]> {
    if (!this.cfg.dump_globals) return [];
    // The roles as the server says them now, for verify to compare a restore's with (pg_authid:
    // a superuser reads it; without one the list is not recorded and verify says so).
    const roles = await query(this.conn, this.tools.psql, this.maintenanceDb, ROLES_SQL, signal).then(parseRecordedRoles, () => undefined);
    return [
      {
        kind: 'postgresql',
        database: null,
        object: 'globals',
        // Roles with password hashes and tablespaces: pg_dump never includes them.
        command: toolCommand(this.conn, this.tools.pgDumpall, ['--globals-only', '--no-password']),
        format: 'sql',
        extension: '.sql',
        compressible: true,
        lockMode: 'none',
        checkFile: async (file, compression, signal) => {
          let text: string;
          try {
            text = await readTail(file, compression, 4096, signal);
          } catch (err) {
            throw corrupt(file, `cannot read it: ${err instanceof Error ? err.message : String(err)}`, err);
          }
          if (!text.includes(TRAILER)) throw corrupt(file, `the '${TRAILER}' trailer is missing (truncated?)`);
        },
        details: { serverVersion: this.versions.server, clientVersion: this.versions.client, ...(roles ? { roles } : {}) },
      },
    ];
  }

  async serverLoad(signal?: AbortSignal): Promise<number | undefined> {
    const sql = `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`;
    const n = Number((await query(this.conn, this.tools.psql, this.maintenanceDb, sql, signal)).trim());
    return Number.isFinite(n) ? n : undefined;
  }

  async close(): Promise<void> {
    // Nothing to remove: credentials stay in the admin's own pgpass file, never in temp files.
  }
}

/** Connect, learn the server version and pick the matching client tools. */
async function openSession(ctx: KindContext, cfg: PostgresqlConfig): Promise<PostgresSession | undefined> {
  const log = ctx.log.child({ kind: 'postgresql' });
  // Under `auto` the plan asked expected() (is a server installed?) first: from here a missing
  // client or a server that does not answer is an error, never a skip.
  const conn = connection(cfg);
  const probe = findPgTool('psql', { binDir: cfg.bin_dir });
  if (!probe) throw new MissingDependencyError(cfg.bin_dir ? join(cfg.bin_dir, 'psql') : 'psql', 'postgresql-client', 'postgresql');
  if (cfg.password_file && (statSync(cfg.password_file).mode & 0o077) !== 0) {
    log.warn(`libpq ignores ${cfg.password_file}: it is readable by group or others (chmod 0600 it)`);
  }
  // 'postgres' is the usual maintenance database; template1 exists on every cluster.
  let info: string | undefined;
  let maintenanceDb = 'postgres';
  let said = '';
  let lastError: unknown;
  for (const db of ['postgres', 'template1']) {
    try {
      info = await query(conn, probe, db, `SELECT current_setting('server_version_num') || ' ' || current_setting('server_version')`, ctx.signal);
      maintenanceDb = db;
      break;
    } catch (err) {
      lastError = err;
      // libpq's own words (socket missing, auth failed) beat the psql command line in a cron mail.
      const stderr = err instanceof CommandError ? err.stderrTail : '';
      said = stderr.split('\n').map((l) => l.replace(/^\S*psql: error: /, '').trim()).filter(Boolean).join(' ');
      if (!/database ".*" does not exist/.test(said)) break;
    }
  }
  if (info === undefined) {
    const detail = said || (lastError instanceof Error ? lastError.message : String(lastError));
    throw new BackupError(`cannot connect to PostgreSQL at ${conn.where} as ${cfg.user}: ${detail}`, ExitCode.DUMP_FAILED, { where: conn.where, user: cfg.user }, { cause: lastError });
  }
  const space = info.trim().indexOf(' ');
  const versionNum = Number(info.trim().slice(0, space));
  const server = info.trim().slice(space + 1);
  const major = majorOf(versionNum);

  // pg_dump refuses a server newer than itself, and an older client may miss new object types.
  const pgDump = findPgTool('pg_dump', { binDir: cfg.bin_dir, major });
  if (!pgDump) throw new MissingDependencyError(`pg_dump (PostgreSQL ${major})`, `postgresql-client-${major}`, `postgresql${major}`);
  const binDir = dirname(pgDump);
  const sibling = (t: string): string => {
    const p = join(binDir, t);
    if (!isExecutable(p)) throw new MissingDependencyError(p, `postgresql-client-${major}`, `postgresql${major}`);
    return p;
  };
  const tools = { psql: isExecutable(join(binDir, 'psql')) ? join(binDir, 'psql') : probe, pgDump, pgDumpall: sibling('pg_dumpall'), pgRestore: sibling('pg_restore') };
  const versionText = (await run(cmd(pgDump, ['--version']), { signal: ctx.signal })).stdout.trim();
  const client = /\(PostgreSQL\)\s+(.+)$/.exec(versionText)?.[1] ?? versionText;
  const clientNum = Number(/^(\d+)(?:\.(\d+))?/.exec(client)?.[1] ?? 0);
  if (clientNum < Math.floor(versionNum / 10000)) {
    throw new MissingDependencyError(`pg_dump ${major} or newer (found ${client} at ${pgDump})`, `postgresql-client-${major}`, `postgresql${major}`);
  }
  log.info(`PostgreSQL ${server} at ${conn.where}, client tools ${client} in ${binDir}`, {
    runAs: conn.uid === undefined ? 'self' : 'postgres',
  });
  return new PostgresSession({ server, client }, conn, tools, maintenanceDb, cfg, sizeBytes(ctx.loaded.config.verify.count_rows_max));
}

/** Should this run dump PostgreSQL (DatabaseKind.expected)? */
export function expected(ctx: KindContext): string | undefined {
  const enabled = ctx.loaded.config.databases.postgresql.enabled;
  return enabled === true ? 'enabled: true' : enabled === false ? undefined : installedEvidence('postgresql', POSTGRESQL_SIGNS, ctx.loaded);
}

export const POSTGRESQL_SIGNS: InstallSigns = {
  binaries: ['postgres'],
  extraBinaries: () => pgBinDirs().map((dir) => join(dir, 'postgres')),
  units: ['postgresql.service', 'postgresql@.service'],
  dataDirs: ['/var/lib/pgsql/data/PG_VERSION', '/var/lib/pgsql/*/data/PG_VERSION', '/var/lib/postgresql/*/main/PG_VERSION'],
};

export async function open(ctx: KindContext): Promise<DatabaseSession | undefined> {
  const cfg = ctx.loaded.config.databases.postgresql;
  if (cfg.enabled === false) return undefined;
  return openSession(ctx, cfg);
}

export async function openTarget(ctx: KindContext, target?: ServerTarget): Promise<RestoreSession> {
  const base = ctx.loaded.config.databases.postgresql;
  const picked = target ? Object.fromEntries(Object.entries(target).filter(([k, v]) => v !== undefined && ['host', 'port', 'user', 'password_file', 'bin_dir'].includes(k))) : {};
  // A socket path is a host for libpq.
  const socketHost = target?.socket !== undefined && target.host === undefined ? { host: target.socket } : {};
  const session = await openSession(ctx, { ...base, ...picked, ...socketHost, enabled: true });
  return withPostgresRestore(session!);
}
