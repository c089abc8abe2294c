import { ensureScopeDisabled } from '../../panel/scope.js';
import { getEngine } from '../../engine/index.js';
import { runJob } from '../../job/backup-job.js';
import { summaryFor } from '../../job/record.js';
import { nightlyVerify, type NightlyVerify } from '../../job/verify-step.js';
import { ping } from '../../report/heartbeat.js';
import { isSuccessfulRun } from '../../report/state-file.js';
import { refreshMetrics } from '../../job/record.js';
import { verifySummary } from '../../verify/summary.js';
import { ExitCode } from '../../exit-codes.js';
import type { CommandContext } from '../context.js';
import { finish } from './outcome.js';
import { currentStatus } from './status.js';

/**
 * The cron.daily entry. Engines we drive (duplicity, restic, borg, none) run the whole job here,
 * then the verification when it is due (after the snapshot, never between it and the dumps).
 * For Bacula, whose director schedules the job and calls our hook, the nightly entry is a
 * watchdog: it keeps the panel's own exports off, verifies when no job is in progress, and
 * complains when backups stopped. Silent when healthy; cron mails whatever is printed.
 */
export default async function nightly(ctx: CommandContext): Promise<number> {
  const engine = getEngine(ctx.loaded.config.engine);
  if (engine.drivesBackup || engine.name === 'none') {
    const outcome = await runJob({ ...ctx, engine: engine.name, trigger: 'cron', ping: false });
    const verified: NightlyVerify = isSuccessfulRun(outcome.state) ? await nightlyVerify(ctx) : {};
    const code = finish(ctx, outcome);
    const verifyFailed = verified.result !== undefined && !verified.result.ok;
    if (verified.result) refreshMetrics(ctx.loaded, ctx.log);
    if (verifyFailed) process.stderr.write(verifySummary(verified.result!) + '\n');
    if (verified.error) process.stderr.write(`warning: ${verified.error}\n`);
    // One heartbeat per night, after the verification: a bad dump is a failed night.
    const failed = outcome.state.status === 'failed' || verifyFailed;
    const tail = [
      outcome.state.status === 'failed' ? summaryFor(ctx.loaded, outcome.state) : outcome.state.problems.join('\n'),
      verifyFailed ? verifySummary(verified.result!) : verified.error ?? '',
    ]
      .filter(Boolean)
      .join('\n');
    await ping(failed ? 'failure' : 'success', ctx.loaded.config.monitor.heartbeat, { log: ctx.log, logTail: tail });
    return code !== ExitCode.OK ? code : verifyFailed ? ExitCode.VERIFY_FAILED : code;
  }
  const warning = await ensureScopeDisabled(ctx.loaded, { log: ctx.log, signal: ctx.signal });
  if (warning) process.stderr.write(`warning: ${warning}\n`);
  const verified = await nightlyVerify(ctx);
  if (verified.result) {
    refreshMetrics(ctx.loaded, ctx.log);
    if (!verified.result.ok) await ping('failure', ctx.loaded.config.monitor.heartbeat, { log: ctx.log, logTail: verifySummary(verified.result) });
  }
  const verdict = await currentStatus(ctx);
  if (!verdict.ok) process.stderr.write(verdict.lines.join('\n') + '\n');
  return verdict.exitCode;
}
