import type { LoadedConfig } from '../config/load.js';
import type { EngineName } from '../config/schema.js';
import type { Logger } from '../log.js';

export type { EngineName };
export type BackupLevel = 'Full' | 'Incremental' | 'Differential';

export interface EngineContext {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  /** Absolute paths to back up: expanded paths.include (siteN only) plus dumps.dir. */
  readonly sources: readonly string[];
  /** Absolute paths/globs never to back up. */
  readonly excludes: readonly string[];
  /** Level asked for (Bacula passes %l); engines that decide themselves may ignore it. */
  readonly level?: BackupLevel;
  /**
   * The tool's own progress, one short line at a time, for the terminal's display; set only when
   * someone watches (an engine may then ask its tool for more output, never under cron). Backup:
   * restic, borg, duplicity. Fetch: borg extract, a Bacula restore job (its file daemon's status);
   * restic 0.14 restore and duplicity 0.8 restore print none.
   */
  readonly onProgress?: (text: string) => void;
}

export interface EngineResult {
  /** Level actually made (duplicity decides full vs incremental by age). */
  readonly level: BackupLevel | 'Snapshot';
  readonly durationMs: number;
  /** Snapshot/archive id when the engine has one. */
  readonly id?: string;
  readonly bytes?: number;
  /** Non-fatal problems (restic exit 3, borg exit 1). */
  readonly warnings: readonly string[];
}

/**
 * One typed interface for every engine. An engine either drives the backup itself
 * (duplicity, restic, borg) or is driven by someone else who calls our hooks (bacula, none).
 */
export interface Engine {
  readonly name: EngineName;
  /** false: pre-backup writes the ACL/xattr sidecar into the dumps dir before the backup. */
  readonly keepsAcls: boolean;
  /** true: `apiscp-backup run` performs the backup with this engine. */
  readonly drivesBackup: boolean;
  /** Fail early with a clear error: missing binary (MissingDependencyError), missing key (ConfigError). */
  check(ctx: EngineContext): Promise<void>;
  /** Make the backup. Only called when the dumps succeeded (or on_dump_failure: warn). */
  backup(ctx: EngineContext): Promise<EngineResult>;
  /** Create the repository once (restic init, borg init); engines that need none omit it. */
  init?(ctx: EngineContext): Promise<string>;
  /**
   * With init: whether the repository exists (a wrong key or an unreachable host is an error,
   * not a "no"; undefined when it cannot tell without side effects, e.g. a remote borg
   * repository). check() calls it, so a run stops before dumping when it is missing.
   */
  initialised?(ctx: EngineContext): Promise<boolean | undefined>;
  /** Apply retention after a successful backup. */
  prune?(ctx: EngineContext): Promise<void>;
  /** Restore the latest backup into `target` (an empty directory): for admins, tests and the demo. */
  restore?(ctx: EngineContext, target: string): Promise<void>;
  /** This server's backups (or `client`'s: another server's, for a migration), newest first. */
  list?(ctx: EngineContext, options?: ListOptions): Promise<BackupPoint[]>;
  /**
   * Only `paths` (and those of `optional` the backup has) of one backup into a staging directory,
   * never the whole backup, in as few runs of the tool as it allows: restic, borg and Bacula take
   * every path in one extraction (one restore, one extract, one restore job); duplicity 0.8
   * restores one path per run (its --include/--exclude are ignored on restore).
   */
  fetch?(ctx: EngineContext, request: FetchRequest): Promise<void>;
  /**
   * fetch from the newest backup of this server (or `client`'s), picked by the tool itself in the
   * same run (restic `latest`): no listing first. Returns the backup it took (undefined: none).
   */
  fetchNewest?(ctx: EngineContext, request: NewestFetchRequest): Promise<BackupPoint | undefined>;
}

export type NewestFetchRequest = Omit<FetchRequest, 'point'> & {
  readonly client?: string;
  /** Called as soon as the tool says which backup it took (before it has extracted it). */
  readonly onNamed?: (point: BackupPoint) => void;
};

export interface ListOptions {
  /** Another server's backups: restic host, borg archive prefix, Bacula client (`--from-client`). */
  readonly client?: string;
}

/** One backup an engine holds, as `list` shows it and `restore --from` picks it. */
export interface BackupPoint {
  readonly engine: EngineName;
  /** What --from accepts: restic snapshot id, borg archive name, duplicity set time, Bacula JobId. */
  readonly id: string;
  /** When it was made (ISO 8601, UTC). */
  readonly time: string;
  readonly level: BackupLevel | 'Snapshot';
  /**
   * How many backups a restore of this point replays: the Full, the newest Differential since
   * (Bacula), every Incremental since. 1 for restic and borg snapshots (self-contained).
   */
  readonly chain: number;
  /** Bacula: the JobIds of that chain, oldest first (what the restore reads). */
  readonly chainIds?: readonly string[];
  readonly status?: string;
  readonly bytes?: number;
  readonly files?: number;
  /** The server it belongs to (restic host, Bacula client), when the engine records it. */
  readonly client?: string;
  /** Bacula: the job's name (a job without our hooks must not look like ours). */
  readonly name?: string;
}

export interface FetchRequest {
  readonly point: BackupPoint;
  /** Absolute paths as they were backed up; a directory brings its whole subtree. */
  readonly paths: readonly string[];
  /** An empty staging directory: each path lands at `into` + path, owners, modes, ACLs and xattrs kept. */
  readonly into: string;
  /**
   * Paths the backup may lack, fetched in the same extraction when it has them: a missing one is
   * no error (what a restore guessed it would need next, lib/restore/stage.ts).
   */
  readonly optional?: readonly string[];
}

/** Every path a request names, required first. */
export function requestedPaths(request: FetchRequest): string[] {
  return [...request.paths, ...(request.optional ?? [])];
}

/** `--keep-last N --keep-daily N …` for restic forget and borg prune (zero counts left out). */
export function keepArgs(keep: { last?: number; daily: number; weekly: number; monthly: number; yearly: number }): string[] {
  const out: string[] = [];
  for (const [name, n] of [['last', keep.last], ['daily', keep.daily], ['weekly', keep.weekly], ['monthly', keep.monthly], ['yearly', keep.yearly]] as const) {
    if (n) out.push(`--keep-${name}`, String(n));
  }
  return out;
}
