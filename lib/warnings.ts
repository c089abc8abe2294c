import type { Logger } from './log.js';

/**
 * A warning is a problem that did not stop the run: the backup exists, but an admin must hear
 * about it (events not dumped, files vanished while the ACL sidecar walked, a database gone,
 * restic exit 3, a retry that was needed). Warnings are values, not log lines: they are recorded
 * in the manifest entry or the run state and from there reach `status` (WARNING), the cron
 * summary, the Prometheus textfile and the success heartbeat.
 *
 * Raising one: `warning('events-skipped', 'mysql "it\'s": 2 events not dumped: …', { kind: 'mysql', database })`
 * and put it in the `warnings` list of whatever you return (DumpSpec, ManifestEntry, RunState).
 * A new `code` is just a new string: keep it kebab-case and stable (metrics are labelled with it).
 */
export interface Warning {
  /** Stable machine name: 'events-skipped', 'database-missing', 'prune-failed'… */
  readonly code: string;
  /** One line for a person, naming what and where. */
  readonly message: string;
  readonly kind?: string;
  readonly database?: string;
  readonly site?: string;
}

/** Codes this tool raises today (others may add their own; see docs/reporting.md). */
export const WarningCodes = {
  EVENTS_SKIPPED: 'events-skipped',
  FILES_VANISHED: 'files-vanished',
  ENGINE_WARNING: 'engine-warning',
  SCOPE_REENABLED: 'scope-reenabled',
  SCOPE_UNKNOWN: 'scope-unknown',
  DATABASE_MISSING: 'database-missing',
  NO_DATABASES: 'no-databases',
  PRUNE_FAILED: 'prune-failed',
  RETRY_NEEDED: 'retry-needed',
  DUMPS_FAILED_BACKED_UP: 'dumps-failed-backed-up',
  REPORT_FAILED: 'report-failed',
  /** The server's inventory could not be read beside a dump: verify can load it but not compare. */
  INVENTORY_MISSING: 'inventory-missing',
  /** A nightly verification could not check a dump (no server of that version, no room) or could not run. */
  VERIFY_NOT_CHECKED: 'verify-not-checked',
  /** Site owners' scheduled exports (backup_dbs.php without --force): error block, failed exit, empty file. */
  OWNER_EXPORTS: 'owner-exports',
  /** A user hook after the backup (after_backup, on_failure) failed. */
  HOOK_FAILED: 'hook-failed',
  /** This run took over from one that died (killed, OOM, a reboot) and cleared what it left. */
  RUN_DIED: 'run-died',
  /** The panel's nightly export is switched off but 10backup_dbs would still run. */
  PANEL_EXPORT_RUNNING: 'panel-export-running',
} as const;

/** Raise a warning into a list and log it: what a step does when a problem must not fail the run. */
export function recordWarning(into: Warning[], log: Logger, w: Warning, fields: Record<string, unknown> = {}): void {
  log.warn(w.message, fields);
  into.push(w);
}

export function warning(code: string, message: string, where: { kind?: string; database?: string; site?: string } = {}): Warning {
  const out: { -readonly [K in keyof Warning]: Warning[K] } = { code, message };
  if (where.kind !== undefined) out.kind = where.kind;
  if (where.database !== undefined) out.database = where.database;
  if (where.site !== undefined) out.site = where.site;
  return out;
}

/** Count per code, for metrics and the heartbeat body (codes only: no database names leave the host). */
export function countByCode(warnings: readonly Warning[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const w of warnings) counts.set(w.code, (counts.get(w.code) ?? 0) + 1);
  return counts;
}

/** `2 warnings: events-skipped ×1, database-missing ×1`: short enough for a plugin line or a ping. */
export function warningsHeadline(warnings: readonly Warning[]): string {
  const parts = [...countByCode(warnings)].map(([code, n]) => (n === 1 ? code : `${code} ×${n}`));
  return `${warnings.length} warning${warnings.length === 1 ? '' : 's'}: ${parts.join(', ')}`;
}
