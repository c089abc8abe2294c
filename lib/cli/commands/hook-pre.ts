import { requireRunnable } from '../../config/checks.js';
import { durationMs } from '../../config/schema.js';
import { hookPreBackup } from '../../job/backup-job.js';
import { watchBaculaCancel, type JobCancelledError } from '../../job/bacula-cancel.js';
import type { BackupLevel } from '../../engine/types.js';
import { ExitCode } from '../../exit-codes.js';
import { runLastResort } from '../../last-resort.js';
import { killAll, terminateAll, waitForChildren } from '../../proc/process-group.js';
import type { CommandContext } from '../context.js';
import { withProgress } from '../progress/watch.js';
import { engineOf, finish, jobOf } from './outcome.js';

/** As after a signal (lib/cli/context.ts): children get this long after SIGTERM, the whole unwind this long. */
const CHILD_GRACE_MS = 3000;
const UNWIND_DEADLINE_MS = 8000;

/**
 * Bacula's RunScript has no timeout of its own: the hook enforces hooks.timeout (or --timeout)
 * and, like on SIGTERM, kills its children and removes partial files when it runs out.
 * Nor does Bacula signal the hook of a cancelled job: under the file daemon the hook watches
 * its job's director connection (job/bacula-cancel.ts) and stops as on SIGTERM when it closes.
 */
export default async function hookPre(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  // Someone else (Bacula, a wrapper) makes the backup: only the dumps' own secrets matter here.
  requireRunnable(ctx.loaded, 'none');
  const limit = durationMs((opts.timeout as string | undefined) ?? ctx.loaded.config.hooks.timeout);
  const engine = engineOf(ctx, opts);
  const job = jobOf(opts);
  const cancelled = new AbortController();
  const onCancel = (err: JobCancelledError): void => {
    ctx.log.warn(`${err.message}: ${String(err.context.detail)}; stopping its dumps`);
    cancelled.abort(err);
    terminateAll(CHILD_GRACE_MS);
    setTimeout(() => {
      killAll();
      runLastResort();
      process.stderr.write(`apiscp-backup: ${err.message}; exiting at once (the job still unwinding ${UNWIND_DEADLINE_MS / 1000} s after it): child processes killed, lock released, partial files removed\n`);
      process.exit(ExitCode.INTERRUPTED);
    }, UNWIND_DEADLINE_MS).unref();
  };
  const watch = engine === 'bacula' ? watchBaculaCancel({ jobId: job?.id, log: ctx.log, onCancel }) : undefined;
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(limit), cancelled.signal]);
  try {
    // Run by hand on a terminal it shows its dumps like `dump` (Bacula's RunScript has no terminal: nothing).
    const outcome = await withProgress(ctx, 'hook pre-backup', undefined, (watch) =>
      hookPreBackup({
        ...ctx,
        signal,
        engine,
        trigger: 'hook',
        level: opts.level as BackupLevel | undefined,
        job,
        watch,
      }),
    );
    return finish(ctx, outcome);
  } catch (err) {
    if (!cancelled.signal.aborted) throw err;
    // Whatever step noticed the abort first, the job was cancelled: say that (exit 143), once
    // every child is gone.
    await waitForChildren(5000);
    throw cancelled.signal.reason;
  } finally {
    watch?.stop();
  }
}
