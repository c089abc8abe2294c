import type { BackupLevel, EngineName } from '../engine/types.js';
import type { Warning } from '../warnings.js';

/**
 * What the last run did, kept in `<state.dir>/status.json` (monitor.status_file) and read by
 * `status`, the watchdog, the Prometheus textfile and heartbeats.
 */
export interface RunState {
  readonly version: 1;
  /** The dump run id (dumps.dir/<runId>), when dumps ran. */
  readonly runId?: string;
  readonly engine: EngineName;
  /** What triggered it: 'dump', 'run', 'hook', 'cron'. */
  readonly trigger: string;
  readonly level?: BackupLevel | 'Snapshot';
  readonly job?: { readonly name?: string; readonly id?: string; readonly client?: string };
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly durationMs?: number;
  /** dumps: counts and bytes; databases: per-database outcome for `status`. */
  readonly dumps?: {
    readonly ok: number;
    readonly failed: number;
    readonly bytes: number;
    readonly databases: readonly { readonly kind: string; readonly database: string | null; readonly site: string; readonly status: 'ok' | 'failed'; readonly bytes?: number; readonly error?: string }[];
    /** Databases of the previous complete run not dumped this time, and why (manifest `missing`). */
    readonly missing?: readonly { readonly kind: string; readonly database: string; readonly site: string; readonly reason: string }[];
  };
  /** The engine's outcome: 'ok', 'warning', 'failed', 'skipped' (dumps failed), or Bacula's %e text. */
  readonly backup?: { readonly status: 'ok' | 'warning' | 'failed' | 'skipped' | 'pending'; readonly detail?: string; readonly id?: string; readonly bytes?: number };
  readonly status: 'running' | 'ok' | 'warning' | 'failed';
  /** One line per error (what failed), for the cron mail and heartbeats. */
  readonly problems: readonly string[];
  /**
   * Non-fatal problems of this run (events skipped, a database gone, restic exit 3…): the run
   * is 'warning', `status` says WARNING, cron gets a short summary, the exit code stays 0.
   * Absent in status files written before warnings existed.
   */
  readonly warnings?: readonly Warning[];
  /** When the newest successful backup (or dumps-only run) finished: the watchdog's clock. */
  readonly lastSuccessAt?: string;
  /** Backups since the last Full (or Differential): what a restore must replay. */
  readonly chain?: { readonly lastFullAt?: string; readonly lastDifferentialAt?: string; readonly incrementalsSince: number };
}

/** What a job knows about a run when it records it: RunState without what follows from it. */
export type RunStateFacts = Omit<RunState, 'version' | 'status' | 'finishedAt' | 'durationMs' | 'lastSuccessAt' | 'chain'> & {
  /** Dumps failed under on_dump_failure: fail, the backup failed, or the run was stopped. */
  readonly failed: boolean;
  /** A warning even without a problem or warning line of its own (a dump of pre-backup failed). */
  readonly degraded?: boolean;
  /** false: pre-backup, the backup is still to come (no finishedAt). Default: finished now. */
  readonly finished?: boolean;
};

/**
 * The one place a run's state is put together. Its status follows from the facts: failed, else
 * warning when anything was said (a problem, a warning), else ok.
 */
export function runState(facts: RunStateFacts, now = new Date()): RunState {
  const { failed, degraded, finished = true, ...rest } = facts;
  const finishedAt = finished ? now.toISOString() : undefined;
  return {
    ...rest,
    version: 1,
    finishedAt,
    durationMs: finishedAt ? now.getTime() - Date.parse(facts.startedAt) : undefined,
    status: failed ? 'failed' : degraded || facts.problems.length > 0 || (facts.warnings?.length ?? 0) > 0 ? 'warning' : 'ok',
  };
}
