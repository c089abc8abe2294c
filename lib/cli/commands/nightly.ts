import { requireRunnable } from '../../config/checks.js';
import { ensureScopeDisabled } from '../../panel/scope.js';
import { getEngine } from '../../engine/index.js';
import { runJob } from '../../job/backup-job.js';
import { addRunWarnings, previousState, refreshMetrics, summaryFor } from '../../job/record.js';
import { checkStatus } from '../../job/status-check.js';
import { nightlyVerify, verifyWarnings, type NightlyVerify } from '../../job/verify-step.js';
import { ping } from '../../report/heartbeat.js';
import { isSuccessfulRun } from '../../report/state-file.js';
import { verifySummary } from '../../verify/summary.js';
import { ExitCode } from '../../exit-codes.js';
import { warningsHeadline } from '../../warnings.js';
import type { CommandContext } from '../context.js';
import { finish } from './outcome.js';
import { withProgress } from '../progress/watch.js';
import type { TerminalProgress } from '../../report/progress-view.js';
import type { VerifyInput } from '../../verify/verify-run.js';

/**
 * The cron.daily entry. Engines we drive (duplicity, restic, borg, none) run the whole job here,
 * then the verification when it is due (after the snapshot, never between it and the dumps).
 * For Bacula, whose director schedules the job and calls our hook, the nightly entry is a
 * watchdog: it keeps the panel's own exports off, verifies when no job is in progress, and
 * complains when backups stopped. Silent when healthy; cron mails whatever is printed.
 */
export default async function nightly(ctx: CommandContext): Promise<number> {
  const engine = getEngine(ctx.loaded.config.engine);
  requireRunnable(ctx.loaded, engine.name);
  if (engine.drivesBackup || engine.name === 'none') {
    // One display for the whole night on a terminal: the job's phases, then the verification.
    const { run, verified } = await withProgress(ctx, 'nightly', engine.name, async (watch) => {
      const run = await runJob({ ...ctx, engine: engine.name, trigger: 'cron', ping: false, watch });
      const verified: NightlyVerify = isSuccessfulRun(run.state) ? await nightlyVerify({ loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, ...(watch ? verifyOnScreen(watch) : {}) }) : {};
      return { run, verified };
    });
    // Dumps it could not check are warnings of tonight's run (status, cron summary, metrics).
    const outcome = { ...run, state: addRunWarnings(ctx.loaded, ctx.log, run.state, verifyWarnings(verified)) };
    if (verified.result || verified.error) refreshMetrics(ctx.loaded, ctx.log);
    const verifyFailed = verified.result !== undefined && verified.result.results.some((r) => r.outcome === 'failed');
    const code = finish(ctx, outcome, { also: ctx.interactive ? verifyNote(ctx, verified) : undefined });
    // On a terminal each failure was printed as it happened (the log's error line, above the display).
    if (verifyFailed && !ctx.interactive) process.stderr.write(verifySummary(verified.result!) + '\n');
    // One heartbeat per night, after the verification: a bad dump is a failed night.
    const state = outcome.state;
    const failed = state.status === 'failed' || verifyFailed;
    const warnings = state.warnings ?? [];
    const tail = [failed || warnings.length || state.problems.length ? summaryFor(ctx.loaded, state) : '', verifyFailed ? verifySummary(verified.result!) : ''].filter(Boolean).join('\n');
    await ping(failed ? 'failure' : 'success', ctx.loaded.config.monitor.heartbeat, {
      log: ctx.log,
      logTail: tail || undefined,
      summary: verifyFailed ? `apiscp-backup: verify failed` : warnings.length ? `apiscp-backup: ${warningsHeadline(warnings)}` : undefined,
    });
    return code !== ExitCode.OK ? code : verifyFailed ? ExitCode.VERIFY_FAILED : code;
  }
  // A panel error (cpcmd failing, an unknown answer) must not stop the watchdog from judging the
  // backups: it is reported, and exits PANEL when the backups themselves are fine.
  let panelError: string | undefined;
  const warning = await ensureScopeDisabled(ctx.loaded, { log: ctx.log, signal: ctx.signal }).catch((err: unknown) => {
    panelError = err instanceof Error ? err.message : String(err);
    return undefined;
  });
  if (warning) process.stderr.write(`warning: ${warning.message}\n`);
  if (panelError) process.stderr.write(`error: cannot keep the panel's nightly exports off: ${panelError}\n`);
  const verified = await withProgress(ctx, 'nightly', undefined, (watch) => nightlyVerify({ loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, ...(watch ? verifyOnScreen(watch) : {}) }));
  const last = previousState(ctx.loaded);
  if (last) addRunWarnings(ctx.loaded, ctx.log, last, verifyWarnings(verified));
  if (verified.result || verified.error) refreshMetrics(ctx.loaded, ctx.log);
  if (verified.result?.results.some((r) => r.outcome === 'failed')) {
    await ping('failure', ctx.loaded.config.monitor.heartbeat, { log: ctx.log, logTail: verifySummary(verified.result), summary: 'apiscp-backup: verify failed' });
  }
  const verdict = await checkStatus(ctx.loaded, ctx.log, ctx.signal);
  // Cron is the only place a Bacula admin reads: the last job's warnings are mailed too (exit 0).
  if (!verdict.ok || verdict.severity === 'WARNING') process.stderr.write(verdict.lines.join('\n') + '\n');
  return verdict.ok && panelError ? ExitCode.PANEL : verdict.exitCode;
}

/** The verification's part of nightly's display: the dump loading now, its size and time, done of total. */
function verifyOnScreen(watch: TerminalProgress): Pick<VerifyInput, 'onStart' | 'onDatabase'> {
  let begun = false;
  return {
    onStart: (e, index, total) => {
      if (!begun) watch.beginVerifyStep();
      begun = true;
      watch.verifyStart(`${e.kind} ${e.database ?? `(${e.object})`}`, e.site, index, total, e.bytes, e.object === 'database' ? 'loading' : 'hashing');
    },
    onDatabase: (r) => watch.verifyEnd(r.outcome),
  };
}

/** The verification's outcome, for the last line nightly prints on a terminal. */
function verifyNote(ctx: CommandContext, v: NightlyVerify): string {
  if (v.error) return 'verify could not run (see above)';
  if (v.skipped) return 'verify postponed: a backup is in progress';
  const results = v.result?.results;
  if (!results) return `no verify tonight (verify.schedule: ${ctx.loaded.config.verify.schedule})`;
  const failed = results.filter((r) => r.outcome === 'failed').length;
  const unchecked = results.filter((r) => r.outcome === 'error').length;
  const ok = results.length - failed - unchecked;
  const head = failed ? `verify: ${failed} of ${results.length} dump(s) FAILED` : `verify: ${ok} of ${results.length} dump(s) ok`;
  return `${head}${unchecked ? `, ${unchecked} not checked` : ''}`;
}
