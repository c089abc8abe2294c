import type { Command } from '../proc/command.js';
import type { Inventory, InventoryProbe } from './inventory.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import type { Warning } from '../warnings.js';
import type { BinlogPosition } from './binlog.js';

/**
 * One typed interface for every database kind. Adding a kind means adding its folder in
 * lib/kinds (its index exports a DatabaseKind) and one line in lib/kinds/index.ts; no file
 * outside lib/kinds branches on a kind's name (test/layers.test.ts greps for it).
 */
export type KindName = 'mysql' | 'postgresql';

export type Compression = 'zstd' | 'gzip' | 'none';

/** What a dump of one object needs: the dump tool's argv (writing to stdout) and how to check it. */
export interface DumpSpec {
  readonly kind: KindName;
  /** The database name, or null for server-wide exports (users/grants, roles). */
  readonly database: string | null;
  readonly object: 'database' | 'users' | 'globals';
  /** The dump tool; it writes the dump to stdout. Credentials via files/env, never argv. */
  readonly command: Command;
  /** 'sql' (restore with the client) or 'custom' (pg_dump -Fc, restore with pg_restore). */
  readonly format: 'sql' | 'custom';
  /** File extension before any compression suffix: '.sql' or '.dump'. */
  readonly extension: string;
  /** false when the format compresses itself (pg_dump -Fc): no second compressor. */
  readonly compressible: boolean;
  /** How consistency was obtained, recorded in the manifest. */
  readonly lockMode?: 'single-transaction' | 'lock-tables' | 'snapshot' | 'none';
  /**
   * Check the finished file. Throw a BackupError with context when it is not complete.
   * `compression` is what the orchestrator applied on top of the tool's output.
   */
  checkFile(file: string, compression: Compression, signal?: AbortSignal): Promise<void>;
  /**
   * The same check made on the tool's output while it streams (before compression), so the
   * finished file need not be decompressed again. When present, the orchestrator uses it
   * instead of checkFile(); checkFile() stays for files checked later (restore, tests). `sidecar: false`
   * when the dump is known to be small (its last one was): no sidecar, and no work for one.
   */
  streamCheck?(options?: { readonly sidecar: boolean }): StreamCheck;
  /** Strings that must never appear in messages (none when credentials live in files). */
  readonly secrets?: readonly string[];
  /** Extra facts for the manifest (engine of each table, encoding…): copied into the manifest entry. */
  readonly details?: Readonly<Record<string, unknown>>;
  /**
   * The server's inventory of the database, read beside the dump (databases only): opened right
   * before the dump starts, it may change the dump command (pg_dump --snapshot). A probe that
   * fails never fails the dump: the manifest then says why the inventory is missing.
   */
  readonly inventory?: (signal?: AbortSignal) => Promise<InventoryProbe>;
  /** What this dump will not contain (events skipped…): recorded in the manifest entry and the run state. */
  readonly warnings?: readonly Warning[];
  /**
   * Watches the dump while its tool runs, from a connection of its own: a lock wait is reported
   * (undefined when it ended) and bounded; started right before the tool, stopped after it.
   */
  watch?(report: (wait: LockWait | undefined) => void): DumpWatch;
  /**
   * The kind's reading of a failed dump: a clearer message (which table, which setting), and
   * `retry` when a new attempt from a new snapshot can succeed (a table changed under the dump).
   */
  explainFailure?(stderr: string): { readonly message?: string; readonly retry?: string } | undefined;
}

/** A dump waiting for a lock another session holds (DumpSpec.watch). */
export interface LockWait {
  readonly table?: string;
  /** Since when the dump's statement waits. */
  readonly since: string;
  /** The waiting statement's state as the server says it ("Waiting for table metadata lock"). */
  readonly state: string;
  /** The session holding the lock; `proven` false when it is the likeliest one, not a fact the server gave. */
  readonly holder?: { readonly id: number; readonly user: string; readonly host: string; readonly command: string; readonly seconds: number; readonly info?: string; readonly proven: boolean };
}

export interface DumpWatch {
  stop(): Promise<void>;
  /** Set when the watch ended the dump (its lock wait passed the limit): the message the failure gets. */
  readonly verdict: string | undefined;
}

/** Sees every chunk of a dump tool's output; finish() throws a BackupError when it is incomplete. */
export interface StreamCheck {
  /** A chunk valid only during the call (the relay reads into one reused buffer): copy what is kept. */
  update(chunk: Buffer): void;
  finish(file: string, compression: Compression): void;
  /**
   * Bytes to keep beside the dump, asked once finish() passed: written as `<dump><suffix>` and
   * named in the manifest entry with its sha256 (mysql: the restore's map of the dump).
   */
  sidecar?(): { readonly suffix: string; readonly data: Buffer } | undefined;
  /** Facts about the dump learnt while it streamed, for its manifest entry (MariaDB: the binlog position), asked after finish(). */
  entryFacts?(signal?: AbortSignal): Promise<{ readonly binlog?: BinlogPosition } | undefined>;
  /** While it returns a promise, the relay reads no more of the dump (the tool blocks on its full pipe). */
  hold?(): Promise<unknown> | undefined;
}

export interface ServerVersions {
  readonly server: string;
  readonly client: string;
}

/** A live connection to one server, opened for one run. */
export interface DatabaseSession {
  readonly kind: KindName;
  readonly versions: ServerVersions;
  /** Every user database (system schemas and templates excluded), before include/exclude. */
  listDatabases(signal?: AbortSignal): Promise<string[]>;
  /** Decide how to dump one database (lock mode per database) and build its command. */
  planDatabase(database: string, signal?: AbortSignal): Promise<DumpSpec>;
  /** Server-wide exports: MySQL users and grants, PostgreSQL roles. */
  planServerWide(signal?: AbortSignal): Promise<DumpSpec[]>;
  /**
   * How many statements the server is running for others right now (MariaDB Threads_running,
   * PostgreSQL active client backends, our own query excluded), for pausing new dumps while the
   * server is busy. undefined when it cannot tell.
   */
  serverLoad?(signal?: AbortSignal): Promise<number | undefined>;
  /** Remove temporary credential files. Always called, also after failures. */
  close(): Promise<void>;
}

export interface KindContext {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
}

/**
 * What says a server of a kind is installed here (`enabled: auto`, lib/dumps/installed.ts). Evidence, any one is enough.
 */
export interface InstallSigns {
  readonly binaries: readonly string[];
  /** Absolute paths of server binaries outside PATH (RHEL's /usr/libexec, PostgreSQL's version directories). */
  readonly extraBinaries?: () => readonly string[];
  readonly units: readonly string[];
  /** System paths of data directories (placed under paths.root); a `*` segment matches any version directory. */
  readonly dataDirs: readonly string[];
}

/**
 * A server of ours that a kind loads dumps into as its superuser: verify's throwaway servers, the
 * sandbox's. `target` is where a restore session reaches it; sql() runs a statement as the
 * superuser (in `database`) and returns its rows, one a line, columns tab-separated.
 */
export interface ScratchServer {
  readonly target: ServerTarget;
  sql(statement: string, database?: string): Promise<string>;
}

/** A throwaway server of a kind's own (verify loads customers' dumps into it), thrown away by destroy(). */
export interface ThrowawayServer extends ScratchServer {
  /** The directory holding its files (private to the OS user it runs as). */
  readonly baseDir: string;
  destroy(): Promise<void>;
}

/** What verify asks of a kind for a throwaway server (DatabaseKind.startThrowaway). */
export interface ThrowawayRequest {
  /** A private directory for the server's files (created by the caller, reachable by `osUser`). */
  readonly baseDir: string;
  /** The version of the server a dump came from: the throwaway one must load it the same way. */
  readonly serverVersion: string;
  /** The unprivileged OS user it runs as (created on first use). */
  readonly osUser: string;
  /**
   * Wraps the command that starts the server in namespaces of its own (no network, the live
   * servers' directories covered); the command carries the uid/gid the wrapper switches to.
   */
  readonly isolate: (start: Command) => Command;
}

/** verify's load of one dump into a throwaway server (DatabaseKind.verifyLoad). */
export interface VerifyLoadInput {
  /** The config verify runs with (restore.connections…); a kind whose session needs none of it may take the defaults. */
  readonly loaded: LoadedConfig | undefined;
  readonly log: Logger;
  readonly server: ScratchServer;
  /** The database as dumped (its manifest entry's name). */
  readonly database: string;
  readonly dump: DumpFile;
  /** The run's server-wide export (users / globals) and its manifest entry's details, when the run has one. */
  readonly accounts?: { readonly file: DumpFile; readonly details?: Readonly<Record<string, unknown>> };
  /** What a failure to reach the server becomes (verify: "not proven bad", never "bad"). */
  readonly unavailable: (err: unknown) => never;
  readonly signal?: AbortSignal;
}

export interface VerifyLoadResult {
  /** What the database holds once loaded, read with the dump-time inventory's query. */
  readonly inventory: Inventory;
  /** Accounts (roles) the load left on the server that differ from those recorded at dump time. */
  readonly problems: readonly string[];
  /** What could not be compared, and why. */
  readonly notes: readonly string[];
}

/** How a kind's accounts are called in messages (restore db's report). */
export interface AccountWords {
  /** 'accounts' (MariaDB) or 'roles' (PostgreSQL). */
  readonly accounts: string;
  readonly account: string;
  /** What they hold on a database: 'grants' or 'privileges'. */
  readonly privileges: string;
  /** What --accounts backup does to an account not in the backup: done, planned (dry run), and the state's name. */
  readonly lock: { readonly done: string; readonly planned: string; readonly state: string };
}

export interface DatabaseKind {
  readonly name: KindName;
  /** What its server-wide export holds (MySQL users and grants, PostgreSQL roles): names a failure. */
  readonly serverWide: 'users' | 'globals';
  readonly words: AccountWords;
  /** What says a server of this kind is installed here (expected() with `enabled: auto`). */
  readonly installSigns: InstallSigns;
  /**
   * The site that owns `database` as the server's files say (MariaDB: its data directory is a
   * symlink into the site's shadow), for when the panel cannot say; undefined when they do not.
   */
  siteOnDisk?(loaded: LoadedConfig, database: string): string | undefined;
  /**
   * verify: load a dump into a throwaway server the way `restore db` loads it (the kind's
   * RestoreSession, its accounts from the server-wide export first), compare the accounts with
   * those recorded at dump time, read the inventory, then drop the database again.
   */
  verifyLoad(input: VerifyLoadInput): Promise<VerifyLoadResult>;
  /**
   * Which throwaway server a dump from a server of `serverVersion` loads into: dumps whose keys
   * are equal share one (e.g. "MariaDB 10.11", PostgreSQL "15"); a short word, usable in a path.
   */
  throwawayKey(serverVersion: string): string;
  /** verify's throwaway server for dumps of `request.serverVersion` (one per throwawayKey). */
  startThrowaway(request: ThrowawayRequest): Promise<ThrowawayServer>;
  /** Its dumps record a log position that point-in-time restores replay from (lib/binlog). */
  readonly pointInTime: boolean;
  /** The sandbox's plain load (the kind's own client tool, no session): a dump into a new database `database`. */
  scratchLoad(server: ScratchServer, dump: DumpFile, database: string, options?: ScratchLoadOptions): Promise<void>;
  /** A checksum of every table's rows (the sandbox's proof that a load gave back what was dumped), keyed by table. */
  checksums(server: ScratchServer, database: string): Promise<Record<string, string>>;
  /** The kind's database name filters (databases.<kind>.include / exclude). */
  nameGlobs(loaded: LoadedConfig): { readonly include: readonly string[]; readonly exclude: readonly string[] };
  /**
   * Should this run dump the kind? A reason ('enabled: true', or the evidence that a server is
   * installed when enabled is auto: lib/dumps/installed.ts), or undefined to skip it.
   */
  expected(ctx: KindContext): string | undefined;
  /**
   * Open a session, or return undefined when the kind is disabled (`enabled: false`). `auto` is
   * decided by expected() before: an unreachable server or missing client tools are errors.
   */
  open(ctx: KindContext): Promise<DatabaseSession | undefined>;
  /**
   * Open a session on the server a restore loads into: the configured server, or `target`
   * (a throwaway server for verification, another host). Never undefined: a restore that cannot
   * reach its server is an error that says where it tried.
   */
  openTarget(ctx: KindContext, target?: ServerTarget): Promise<RestoreSession>;
}

export interface ScratchLoadOptions {
  /** PostgreSQL: skip GRANT/REVOKE (a throwaway server lacks the roles; verify compares objects and rows). */
  readonly noPrivileges?: boolean;
  readonly signal?: AbortSignal;
}

/**
 * Where a restore connects: overrides for the kind's config section (databases.mysql /
 * databases.postgresql). Each kind reads the fields it knows; credentials stay in files.
 */
export interface ServerTarget {
  readonly socket?: string;
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly password_file?: string;
  readonly defaults_file?: string;
  readonly bin_dir?: string;
}

/** A dump on disk, as its manifest entry describes it. */
export interface DumpFile {
  readonly path: string;
  readonly compression: Compression | 'internal';
  readonly format: 'sql' | 'custom';
  /** The map written beside it at dump time (StreamCheck.sidecar), with the sha256 recorded for it. */
  readonly map?: { readonly path: string; readonly sha256: string };
  /** The database it was dumped from (its manifest entry's name): a load under another name retargets the dump's own statements about it. */
  readonly database?: string;
  /** Its manifest entry's details (MariaDB: the database's character set and collation at dump time). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** What a restore of `database` under the name `into` may do to accounts (MariaDB: lib/kinds/mysql/accounts.ts). */
export interface AccountsRequest {
  readonly database: string;
  readonly into: string;
  /** --grants (with --into): grant on `into` what the accounts hold on `database` now. */
  readonly copyGrants: boolean;
  /** --accounts: 'keep' leaves existing accounts as they are (and reports how they differ); 'backup' makes them the backup's on the database. */
  readonly accounts: 'keep' | 'backup';
  /** --dry-run: plan and compare only (no plugin is loaded); AccountWork.preview() says what it would do. */
  readonly dryRun?: boolean;
}

export interface AccountReport {
  /** Accounts (and roles) the restore created. */
  readonly created: readonly string[];
  /** Accounts that got grants on the restored database. */
  readonly granted: readonly string[];
  /** Existing accounts made the backup's (--accounts backup). */
  readonly changed: readonly string[];
  /** Accounts not in the backup, holding grants only on this database, locked (--accounts backup). */
  readonly locked: readonly string[];
  /** How the accounts with privileges on the database differ from the backup's, after the restore. */
  readonly drift: readonly string[];
  readonly notes: readonly string[];
  /** Authentication plugins loaded for accounts the restore created. */
  readonly plugins: readonly string[];
}

/** The account work of one restore, planned (and checked) before anything changes. */
export interface AccountWork {
  /** What beforeLoad() creates. */
  readonly created: readonly string[];
  readonly plugins: readonly string[];
  /** Before the load: create the missing accounts the database needs (not their grants on it). */
  beforeLoad(): Promise<void>;
  /** After the load: grants on the restored database, --accounts backup, the drift report. */
  afterLoad(): Promise<AccountReport>;
  /** A failed restore: drop the accounts beforeLoad() created; returns their names. */
  undo(): Promise<string[]>;
  /** --dry-run: what it would create, change and lock, and the drift found now; changes nothing. */
  preview?(): Promise<AccountReport>;
}

export type DatabaseState = 'missing' | 'empty' | 'non-empty';

/** A session that can also load dumps: the restore half of a kind. */
export interface RestoreSession extends DatabaseSession {
  /** Where the session connects, for messages ("/run/mysqld.sock", "host:5432"). */
  readonly where: string;
  databaseState(database: string, signal?: AbortSignal): Promise<DatabaseState>;
  /**
   * Create `database`; with `from`, as the dumped database was (MariaDB: its character set and
   * collation, recorded at dump time or read from the dump, else the server's default and a log
   * line saying so; PostgreSQL: encoding, locale and owner from the archive, its settings,
   * privileges and comment following in load()).
   */
  createDatabase(database: string, from: DumpFile | undefined, signal?: AbortSignal): Promise<void>;
  dropDatabase(database: string, signal?: AbortSignal): Promise<void>;
  /**
   * Create the accounts the dump needs (MariaDB: users with grants on `database` and DEFINER
   * users; PostgreSQL: owners and grantees) that the server lacks, from the server-wide export
   * (users / globals), and re-grant what the export grants on `database`. Returns the accounts
   * created. Without an export, returns [] (the load may then fail on a missing owner).
   */
  ensureAccounts(database: string, dump: DumpFile, accounts: DumpFile | undefined, signal?: AbortSignal): Promise<string[]>;
  /**
   * MariaDB: the accounts' part of a restore, split around the load (objects first, then grants)
   * and undoable; used instead of ensureAccounts when present. Checks (plugins) run here, before
   * anything changes.
   */
  prepareAccounts?(request: AccountsRequest, dump: DumpFile, accounts: DumpFile | undefined, signal?: AbortSignal): Promise<AccountWork>;
  /**
   * Start reading what ensureAccounts and load need from `dump` (MariaDB: its map) while the
   * caller checks the file's sha256, so the two passes overlap; a failure shows where the result
   * is used. Nothing read is used unless they are called afterwards; close() stops the reading.
   */
  prefetch?(dump: DumpFile, signal?: AbortSignal): void;
  /**
   * The first look inside a dump that is not loaded yet (the --force safety dump): throws when it
   * could not be loaded back (PostgreSQL: code COPY would run as the superuser). Kinds without
   * such a refusal leave it out.
   */
  checkLoadable?(dump: DumpFile, signal?: AbortSignal): Promise<void>;
  /** Stream `dump` into `database` (which exists and is empty). */
  load(database: string, dump: DumpFile, signal?: AbortSignal): Promise<void>;
  /**
   * What `database` holds now, read with the query the dump-time inventory used (every table
   * counted): what a restore and verify compare with the manifest's inventory.
   */
  inventory(database: string, signal?: AbortSignal): Promise<Inventory>;
}
