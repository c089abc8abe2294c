import type { BackupLevel, EngineName } from '../engine/types.js';

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
  };
  /** The engine's outcome: 'ok', 'warning', 'failed', 'skipped' (dumps failed), or Bacula's %e text. */
  readonly backup?: { readonly status: 'ok' | 'warning' | 'failed' | 'skipped' | 'pending'; readonly detail?: string; readonly id?: string; readonly bytes?: number };
  readonly status: 'running' | 'ok' | 'warning' | 'failed';
  /** One line per problem, for the cron mail and heartbeats. */
  readonly problems: readonly string[];
  /** When the newest successful backup (or dumps-only run) finished: the watchdog's clock. */
  readonly lastSuccessAt?: string;
  /** Backups since the last Full (or Differential): what a restore must replay. */
  readonly chain?: { readonly lastFullAt?: string; readonly lastDifferentialAt?: string; readonly incrementalsSince: number };
}
