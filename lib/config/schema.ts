import { z } from 'zod';

/**
 * The one schema: it validates config.yaml, supplies every default (an empty file is valid) and
 * documents each key (`config init` and docs/configuration.md's reference are generated from `describe`).
 * Key names are a contract with admins' files and other tools: rename nothing.
 *
 * Paths marked "(under paths.root)" are placed below `paths.root` (default `/`), so the tests,
 * the demo and `--root` previews never touch the real /etc, /var, /run or /home/virtual.
 */

const duration = z
  .union([z.number().nonnegative(), z.string().regex(/^\d+(\.\d+)?\s*(ms|s|m|h|d)?$/, 'expected a duration like 90s, 10m, 6h or 1d')])
  .describe('duration');

const glob = z.string().min(1);

/** User hooks: a list of argv arrays (no shell: `["/usr/local/bin/x", "--flag"]`), APISCP_BACKUP_* facts in the environment. */
const hookCommands = z.array(z.array(z.string()).min(1, 'a hook command needs at least the program')).default([]);
const tristate = z.union([z.literal('auto'), z.boolean()]);

/** Snapshot retention for restic and borg (forget/prune --keep-*): an unpruned repository only grows. */
const keep = z
  .object({
    last: z.number().int().min(1).optional().describe('newest snapshots to keep regardless of date'),
    daily: z.number().int().min(0).default(7),
    weekly: z.number().int().min(0).default(4),
    monthly: z.number().int().min(0).default(6),
    yearly: z.number().int().min(0).default(0),
  })
  .strict()
  .default({});

const mysql = z
  .object({
    enabled: tristate.default('auto').describe('dump MySQL/MariaDB: auto = when a server is installed here (binary, service unit, data directory or an earlier dump); an installed server that does not answer is a failed dump'),
    socket: z.string().optional().describe('server socket (default: the client default, usually /var/lib/mysql/mysql.sock)'),
    host: z.string().optional().describe('TCP host instead of the socket'),
    port: z.number().int().positive().optional().describe('TCP port'),
    user: z.string().default('root').describe('user that can read every database, lock tables and show grants'),
    password_file: z.string().optional().describe('file holding the password (0600); the tools get it in an option file kept in memory (TMPDIR when a tmpfs, else /dev/shm), never on argv; default: credentials from /root/.my.cnf when present'),
    defaults_file: z.string().default('/root/.my.cnf').describe('option file read for credentials when present'),
    include: z.array(glob).default(['*']).describe('database name globs to dump'),
    exclude: z.array(glob).default([]).describe('database name globs to skip'),
    max_allowed_packet: z.string().default('1G').describe('client packet size: large rows fail with the 16M default'),
    dump_users: z.boolean().default(true).describe('export users and grants to _server/mysql-users.sql (.zst/.gz as dumps.compression)'),
    lock_wait_timeout: duration
      .default('5m')
      .describe("a database's dump gives up on a table another session holds locked (LOCK TABLES, a long ALTER) after this long instead of the server's default of a day; the database fails, the others are dumped, a wait longer than a few seconds is logged and shown by status with the table and the session holding it"),
  })
  .strict();

const postgresql = z
  .object({
    enabled: tristate.default('auto').describe('dump PostgreSQL: auto = when a server is installed here (binary, service unit, data directory or an earlier dump); an installed server that does not answer is a failed dump'),
    host: z.string().optional().describe('host name or socket directory (default: the local socket)'),
    port: z.number().int().positive().optional().describe('port (also selects the socket file)'),
    user: z.string().default('postgres').describe('database superuser; with a local socket we run the tools as this OS user (peer authentication)'),
    password_file: z.string().optional().describe('a pgpass file (0600) handed over as PGPASSFILE'),
    bin_dir: z.string().optional().describe('directory of pg_dump/pg_restore (default: the server major version\'s own tools when installed)'),
    include: z.array(glob).default(['*']).describe('database name globs to dump'),
    exclude: z.array(glob).default([]).describe('database name globs to skip'),
    dump_globals: z.boolean().default(true).describe('export roles with pg_dumpall --globals-only'),
    lock_wait_timeout: duration
      .default('15m')
      .describe('pg_dump gives up on a table another session holds exclusively (a long ALTER) instead of waiting until dumps.timeout'),
  })
  .strict();

const apnscp = z
  .object({
    php: z.string().default('/usr/bin/apnscp_php').describe('PHP binary ApisCP uses'),
    script: z.string().default('/usr/local/apnscp/bin/scripts/backup_dbs.php').describe('the panel\'s export script'),
    args: z.array(z.string()).default(['--force']).describe('arguments (--force ignores per-database export schedules)'),
    timeout: duration.default('6h'),
  })
  .strict();

/** The one list of engines: the config's `engine` key, the CLI's --engine choices, EngineName. */
export const ENGINE_NAMES = ['none', 'bacula', 'duplicity', 'restic', 'borg'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

export const configSchema = z
  .object({
    engine: z.enum(ENGINE_NAMES).default('none').describe('backup engine; none = dumps only, for any other backup software'),
    on_dump_failure: z.enum(['fail', 'warn']).default('fail').describe('fail = a failed dump fails the backup (Bacula job fails, no snapshot, exit 1); warn = back up anyway, still exit 1 with a warning (the Bacula hook exits 0)'),
    paths: z
      .object({
        root: z.string().default('/').describe('prefix for every system path (tests, demo, previews)'),
        home: z.string().default('/home/virtual').describe('ApisCP sites (under paths.root)'),
        include: z
          .array(glob)
          .default(['/home/virtual/site*/shadow', '/home/virtual/site*/info', '/var/log/mailer_table*', '/var/lib/mysql/mysql-grants*', '/var/lib/pgsql/*/backups'])
          .describe('what the engine backs up besides dumps.dir (under paths.root); site* matches only siteN directories'),
        exclude: z
          .array(glob)
          .default(['/home/virtual/site*/fst', '/home/virtual/FILESYSTEMTEMPLATE', '/home/virtual/site*/shadow/var/lib', '/home/virtual/site*/fst/.socket'])
          .describe('never backed up (under paths.root): raw database files are not consistent, fst is an overlay mount'),
      })
      .strict()
      .default({}),
    dumps: z
      .object({
        dir: z.string().default('/var/backup/apiscp-backup').describe('where runs are written (under paths.root)'),
        keep: z.number().int().min(1).default(3).describe('complete runs to keep; older runs are kept too while they hold the newest good dump of a database (see keep_gone); the newest complete run is never deleted'),
        compression: z.enum(['auto', 'zstd', 'gzip', 'none']).default('auto').describe('auto = zstd when installed, else gzip'),
        level: z.number().int().min(1).max(19).optional().describe('compression level (default: zstd 1, gzip 6; see docs/performance.md)'),
        rsyncable: tristate
          .default('auto')
          .describe('compress in independent blocks so a small change stays small for deduplicating/delta engines (doubles zstd -1 CPU); auto = on for restic, borg and duplicity'),
        threads: z
          .union([z.literal('auto'), z.number().int().min(1).max(64)])
          .default('auto')
          .describe('zstd threads per dump; auto = the cores shared by the databases dumped at once (a database dumped alone gets them all)'),
        concurrency: z
          .union([z.literal('auto'), z.number().int().min(1).max(64)])
          .default(2)
          .describe('databases dumped at once; auto = the idle cores at the start (cores minus the 1-minute load), 1 to 8'),
        sync: z
          .enum(['run', 'file'])
          .default('run')
          .describe('run = one syncfs of the dumps filesystem before the manifest; file = fsync every dump as it is written (a shared, busy filesystem)'),
        throttle: z
          .object({
            threads_running: z
              .union([z.literal('auto'), z.number().int().min(0)])
              .default('auto')
              .describe('start no new dump while the server runs more statements than this for others (Threads_running, PostgreSQL active backends); auto = 2 per core, at least 4; 0 = off'),
            max_wait: duration.default('15m').describe('per dump: start anyway after waiting this long (a backup late beats no backup)'),
          })
          .strict()
          .default({}),
        max_rate: z
          .string()
          .regex(/^(0|\d+[KMG]?)$/i, 'expected a rate like 10M (bytes of SQL per second) or 0')
          .refine((v) => v === '0' || !/^\d+[KMG]?$/i.test(v) || sizeBytes(v) >= 1 << 20, 'at least 1M per second (or 0 = no limit)')
          .default('0')
          .describe("MySQL/MariaDB dumps: at most this much SQL per second from the dump tools, all dumps together (e.g. 10M); 0 = no limit. Gentler on a busy server's sites, at the price of time (docs/performance.md); PostgreSQL dumps are not paced"),
        timeout: duration.default('6h').describe('per database'),
        retries: z.number().int().min(0).max(10).default(1).describe('more attempts to reach a database server that does not answer (a server restarting at night is common); a retry that was needed is a warning'),
        retry_wait: duration.default('30s').describe('pause before each retry'),
        keep_gone: duration
          .default('30d')
          .describe('retention keeps the newest good dump of a database that no longer exists (site deleted) for this long after its last dump, beyond dumps.keep'),
        space_margin: z.number().min(1).max(10).default(1.2).describe('free space needed on dumps.dir before a run: the previous run\'s size times this'),
      })
      .strict()
      .default({}),
    databases: z
      .object({
        method: z.enum(['native', 'apnscp', 'both']).default('native').describe('native = our per-database dumps; apnscp = run the panel\'s backup_dbs.php; both'),
        mysql: mysql.default({}),
        postgresql: postgresql.default({}),
        apnscp: apnscp.default({}),
      })
      .strict()
      .default({}),
    panel: z
      .object({
        enabled: tristate.default('auto').describe('auto = when cpcmd is found'),
        cpcmd: z.string().default('auto').describe('auto = $CPCMD, then cpcmd on PATH, then /usr/local/apnscp/bin/cmd'),
        timeout: duration.default('2m'),
        concurrency: z.number().int().min(1).max(16).default(4).describe('cpcmd calls at once while mapping databases to sites'),
        owner_exports: z
          .boolean()
          .default(true)
          .describe("with databases.method native: after our dumps run backup_dbs.php WITHOUT --force, so the exports site owners scheduled (mysql:add-backup, ~/mysql_backups) go on, consistent with the backup; problems are warnings"),
        upcp: z
          .string()
          .default('auto')
          .describe('older panels only (no backups.automatic-database-exports scope): upcp applies manual_database_backups; auto = $UPCP, upcp on PATH, /usr/local/sbin/upcp, $APNSCP_HOME/bin/upcp'),
        upcp_timeout: duration.default('30m').describe('`upcp -sb apnscp/crons` runs a Bootstrapper role (ansible): minutes, not seconds'),
      })
      .strict()
      .default({}),
    priority: z
      .object({
        nice: z.number().int().min(-20).max(19).default(10).describe('CPU priority of our processes (dump tools, compressors, engines); mariadbd\'s own threads keep theirs'),
        ionice: z
          .enum(['none', 'best-effort', 'idle'])
          .default('best-effort')
          .describe('I/O class of our processes (best-effort at the lowest level 7); only the bfq scheduler honours it, mq-deadline and none ignore it'),
      })
      .strict()
      .default({}),
    lock: z
      .object({
        path: z.string().default('/run/apiscp-backup.lock').describe('shared by cron and the backup hooks (under paths.root)'),
        wait: duration.default('5m').describe('how long a second run waits before exiting busy'),
      })
      .strict()
      .default({}),
    state: z
      .object({ dir: z.string().default('/var/lib/apiscp-backup').describe('scope memory, run state, status.json (under paths.root)') })
      .strict()
      .default({}),
    hooks: z
      .object({
        timeout: duration.default('12h').describe('pre-backup limit: Bacula RunScript has none of its own'),
        command_timeout: duration.default('30m').describe('limit for each command of before_dumps, after_dumps, after_backup, on_failure'),
        before_dumps: hookCommands.describe('commands run before the dumps; a failure fails the run (no dumps, no backup)'),
        after_dumps: hookCommands.describe('commands run after good dumps, before the backup; a failure fails the run (no backup)'),
        after_backup: hookCommands.describe('commands run after the backup (engine none: after the dumps), e.g. a custom method or a hand-off; a failure is a warning'),
        on_failure: hookCommands.describe('commands run when the run failed; a failure is a warning'),
      })
      .strict()
      .default({}),
    duplicity: z
      .object({
        target: z.string().optional().describe('duplicity URL, e.g. file:///backup/duplicity or sftp://host/path'),
        full_every: z.string().regex(/^\d+[smhDWMY]$/, 'expected a duplicity time like 7D or 1M').default('1M'),
        keep_full: z.number().int().min(1).default(2),
        archive_dir: z.string().default('/var/cache/duplicity').describe('(under paths.root)'),
        name: z.string().default('apiscp'),
        passphrase_file: z.string().optional().describe('file with the GnuPG passphrase, passed as PASSPHRASE in the environment'),
        extra_args: z.array(z.string()).default([]),
      })
      .strict()
      .default({}),
    restic: z
      .object({
        repository: z.string().optional(),
        password_file: z.string().optional(),
        keep: keep.describe('after each backup: restic forget --prune with these --keep-* (only our tagged snapshots)'),
        append_only: z.boolean().default(false).describe('the repository refuses deletes (rclone serve restic --append-only): retention runs on the backup host (`apiscp-backup prune --print`), never from here (docs/offsite.md)'),
        cacert: z.string().optional().describe('rest:https:// repositories: the CA certificate that signed the REST server\'s certificate'),
        tls_client_cert: z.string().optional().describe('rest:https:// repositories: this server\'s client certificate and its private key in one PEM file (0600 root)'),
        stall_timeout: z
          .number()
          .int()
          .min(1)
          .default(600)
          .describe('remote repositories: seconds without progress from `restic backup` (files and bytes read) before the run fails as a broken link (restic 0.14 retries a dead connection for up to half an hour); above the time a few packs take to upload on a slow link'),
        extra_args: z.array(z.string()).default([]),
      })
      .strict()
      .default({}),
    borg: z
      .object({
        repository: z.string().optional(),
        passphrase_file: z.string().optional(),
        compression: z.string().default('zstd,3'),
        keep: keep.describe('after each backup: borg prune (our archives only) with these --keep-*, then borg compact'),
        append_only: z.boolean().default(false).describe('the repository is served with `borg serve --append-only`: retention runs on the backup host (`apiscp-backup prune --print`), never from here (docs/offsite.md)'),
        ssh_key: z.string().optional().describe('ssh:// repositories: this server\'s private key (0600 root; `repo-init --remote` creates it)'),
        ssh_known_hosts: z.string().optional().describe('ssh:// repositories: known_hosts file holding the backup host\'s key (default: root\'s ~/.ssh/known_hosts); unknown hosts are refused'),
        ssh_timeout: z.number().int().min(1).default(60).describe('ssh:// repositories: seconds without an answer from the backup host before the run fails (a cut link)'),
        checkpoint_interval: z.number().int().min(1).optional().describe('seconds between borg checkpoints (default borg\'s 1800): a cut link resumes from the last one'),
        extra_args: z.array(z.string()).default([]),
      })
      .strict()
      .default({}),
    bacula: z
      .object({
        client: z.string().default('apiscp-fd'),
        fileset: z.string().default('ApisCP'),
        job: z.string().default('ApisCP'),
        jobdefs: z.string().default('DefaultJob').describe('the ApisCP Bacula add-on uses "Incremental"'),
        etc: z.string().default('/etc/bacula').describe('the director\'s configuration directory, where `bacula config` looks for the ApisCP add-in (under paths.root)'),
        wrapper: z
          .string()
          .default('/usr/local/sbin/apiscp-backup')
          .describe('the fixed path install puts on every client and the RunScripts call, whatever node each server has (under paths.root)'),
        bconsole: z.string().default('bconsole').describe('bconsole binary for list and restore (needs a Console on the director: docs/restore.md)'),
        bconsole_config: z.string().default('/etc/bacula/bconsole.conf').describe('bconsole -c FILE (a restricted Console for this client is enough)'),
        restore_job: z.string().optional().describe('the director\'s Restore job (needed when it has more than one)'),
        strip_path: z.number().int().min(0).default(0).describe('components the FileSet strips from site paths (the add-in\'s Client-Layer: strippath=2)'),
      })
      .strict()
      .default({}),
    restore: z
      .object({
        staging_dir: z.string().default('/var/lib/apiscp-backup/restore').describe('where backups are fetched before they are compared and applied: each restore gets a fresh 0700 directory in it; it and the directories above it must belong to root and be writable by nobody else (under paths.root)'),
        connections: z
          .number()
          .int()
          .min(1)
          .max(16)
          .default(2)
          .describe("MariaDB/MySQL: connections loading one SQL dump at once, each its own contiguous part of the dump's rows (whole tables where the sizes allow, a big table split; like myloader -t), over the MariaDB protocol when the client's option files name a socket or host without TLS options (else over client processes; the log says why); 1 streams the dump into one client"),
      })
      .strict()
      .default({}),
    fleet: z
      .object({
        max_age: duration.default('26h').describe('a client whose newest good backup job is older is stale'),
        clients: z.array(glob).default(['*']).describe('Client names to report (globs)'),
        exclude: z.array(glob).default([]).describe('Client names to leave out, e.g. the director\'s own "self"'),
        prometheus_textfile: z.string().optional().describe('written by every `fleet status`: per-client metrics with a client label (under paths.root)'),
        timeout: duration.default('2m').describe('for each bconsole call'),
      })
      .strict()
      .default({}),
    verify: z
      .object({
        schedule: z
          .enum(['off', 'nightly', 'weekly'])
          .default('nightly')
          .describe('after the nightly backup, load a sample of the newest dumps into throwaway servers and compare them with the server\'s inventory (weekly: once every 7 days)'),
        sample: z
          .number()
          .int()
          .min(1)
          .default(3)
          .describe('databases per verification, oldest-verified first: every database is verified within ceil(databases / sample) verifications'),
        count_rows_max: z
          .string()
          .regex(/^\d+[KMG]?$/i, 'expected a size like 4G or 512M')
          .default('4G')
          .describe('at dump time, tables up to this data size get an exact row count (COUNT(*) scans them); larger ones are still checked for presence'),
        work_dir: z
          .string()
          .default('/var/tmp')
          .describe('where the throwaway servers keep their data (needs room for the largest database loaded; not under paths.root: the postgres user must reach it)'),
      })
      .strict()
      .default({}),
    monitor: z
      .object({
        max_age: duration.default('26h').describe('status/watchdog: the last good backup must be younger'),
        status_file: z.string().optional().describe('default <state.dir>/status.json: moving state.dir moves it too (under paths.root)'),
        prometheus_textfile: z.string().optional().describe('node-exporter textfile, e.g. /var/lib/node_exporter/apiscp_backup.prom (under paths.root)'),
        heartbeat: z
          .object({
            start: z.string().url().optional(),
            success: z.string().url().optional(),
            failure: z.string().url().optional(),
            send_log_tail: z.boolean().default(false),
            timeout: duration.default('10s'),
            retries: z.number().int().min(0).max(10).default(2),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    logging: z
      .object({
        file: z.string().default('/var/log/apiscp-backup.log').describe('JSON lines (under paths.root)'),
        level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
      })
      .strict()
      .default({}),
    cron: z
      .object({
        dir: z.string().default('/etc/cron.daily').describe('(under paths.root)'),
        name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'cron.daily names may not contain dots (Debian run-parts skips them)').default('apiscp-backup'),
      })
      .strict()
      .default({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
export type MysqlConfig = Config['databases']['mysql'];
export type PostgresqlConfig = Config['databases']['postgresql'];

/** Keys whose values are secrets or point at secrets: `config print` and logs redact them. */
export const SECRET_KEYS = ['password', 'passphrase'] as const;

/** '4G' → bytes (K, M, G are powers of 1024; no suffix: bytes). */
export function sizeBytes(value: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(value.trim());
  if (!m) throw new Error(`bad size ${value}`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

export function durationMs(value: number | string): number {
  if (typeof value === 'number') return value * 1000;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new Error(`bad duration ${value}`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return n * unit;
}
