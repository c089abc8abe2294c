import type { LoadedConfig } from '../config/load.js';
import { isAlive, readHolder } from '../lock/lock.js';
import type { Logger } from '../log.js';
import { readVerifyState, recordVerifyError, verifyStateFile, type VerifyState } from '../model/verify-state.js';
import { verifyRun, type VerifyInput, type VerifyResult } from '../verify/verify-run.js';
import { readPins } from './pins.js';
import { warning, WarningCodes, type Warning } from '../warnings.js';

const HOUR = 3_600_000;
/** cron.daily starts at a different minute each day (anacron's RANDOM_DELAY): leave slack. */
const DUE_AFTER = { nightly: 20 * HOUR, weekly: 7 * 24 * HOUR - 4 * HOUR } as const;

/** Whether the schedule wants a verification now. */
export function verifyDue(schedule: LoadedConfig['config']['verify']['schedule'], state: VerifyState | undefined, now = new Date()): boolean {
  if (schedule === 'off') return false;
  const last = state?.lastRun?.trigger === 'nightly' ? state.lastRun : undefined;
  return !last || now.getTime() - Date.parse(last.at) >= DUE_AFTER[schedule];
}

export interface NightlyVerify {
  readonly result?: VerifyResult;
  /** Why nothing was verified although it was due: a backup in progress (try next night). */
  readonly skipped?: string;
  /** The verification could not run at all (a warning for status and the cron mail). */
  readonly error?: string;
}

/**
 * The nightly verification: after the backup, never while one is between its dumps and its
 * snapshot (a Bacula job pinned its dumps, or another run holds the lock): then it waits for
 * the next night. The newest complete run, `verify.sample` databases by rotation.
 */
export async function nightlyVerify(input: { loaded: LoadedConfig; log: Logger; signal?: AbortSignal } & Pick<VerifyInput, 'onStart' | 'onDatabase'>): Promise<NightlyVerify> {
  const { loaded, log } = input;
  const cfg = loaded.config.verify;
  if (!verifyDue(cfg.schedule, readVerifyState(verifyStateFile(loaded.paths.stateDir)))) return {};
  const found = readHolder(loaded.paths.lockPath);
  const holder = found && found.pid !== process.pid && isAlive(found.pid) ? found : undefined;
  const pins = readPins(loaded);
  if (holder || pins.length) {
    const skipped = `verification postponed: a backup is in progress (${holder ? `pid ${holder.pid} ${holder.command}` : `job ${pins[0]!.job ?? pins[0]!.jobId ?? '?'} reads run ${pins[0]!.runId}`})`;
    log.info(skipped);
    return { skipped };
  }
  try {
    return { result: await verifyRun({ loaded, log, signal: input.signal, sample: cfg.sample, trigger: 'nightly', onStart: input.onStart, onDatabase: input.onDatabase }) };
  } catch (err) {
    if (input.signal?.aborted) throw err;
    // The backup is made; a verification that cannot run at all (work_dir missing, no complete
    // run) is a warning in status, not a failed night.
    const message = `verification could not run: ${(err as Error).message}`;
    log.warn(message);
    recordVerifyError(verifyStateFile(loaded.paths.stateDir), message);
    return { error: message };
  }
}

/** What a nightly verification leaves for the run's warnings: dumps it could not check, or that it could not run. Failures are not warnings (status CRITICAL, exit 9). */
export function verifyWarnings(verified: NightlyVerify): Warning[] {
  if (verified.error) return [warning(WarningCodes.VERIFY_NOT_CHECKED, verified.error)];
  return (verified.result?.results ?? [])
    .filter((r) => r.outcome === 'error')
    .map((r) => warning(WarningCodes.VERIFY_NOT_CHECKED, `verify: ${r.kind} '${r.database}' not checked: ${r.problems.join('; ')}`, { kind: r.kind, database: r.database, site: r.site }));
}
