/**
 * Process exit codes. They are part of the public contract (README "Exit codes"):
 * cron wrappers, Bacula RunScript and monitoring checks branch on them.
 */
export const ExitCode = {
  OK: 0,
  /** At least one dump failed or failed verification (the others were written). */
  DUMP_FAILED: 1,
  /** Bad command line or invalid configuration file. */
  USAGE: 2,
  /** Another run holds the lock (after waiting `lock.wait`). */
  BUSY: 3,
  /** cpcmd is missing, failed, or printed an ApisCP error block. */
  PANEL: 4,
  /** The backup engine (bacula, duplicity, restic, borg) failed. */
  ENGINE: 5,
  /** `status`/watchdog: the last good backup is older than monitor.max_age, or the last run failed. */
  STALE: 6,
  /** A required system binary is missing (message says which package provides it). */
  MISSING_DEPENDENCY: 7,
  /** A restore was refused (non-empty target without --force, no space) or failed; what was and was not put back is said. */
  RESTORE_FAILED: 8,
  /** Unexpected internal error (a bug): please report it with the log. */
  INTERNAL: 70,
  /** Interrupted by SIGTERM/SIGINT (job cancelled); children were killed, partial files removed. */
  INTERRUPTED: 143,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
