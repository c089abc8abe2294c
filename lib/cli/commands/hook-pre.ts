import { requireRunnable } from '../../config/checks.js';
import { durationMs } from '../../config/schema.js';
import { hookPreBackup } from '../../job/backup-job.js';
import type { BackupLevel } from '../../engine/types.js';
import type { CommandContext } from '../context.js';
import { engineOf, finish, jobOf } from './outcome.js';

/**
 * Bacula's RunScript has no timeout of its own: the hook enforces hooks.timeout (or --timeout)
 * and, like on SIGTERM, kills its children and removes partial files when it runs out.
 */
export default async function hookPre(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  // Someone else (Bacula, a wrapper) makes the backup: only the dumps' own secrets matter here.
  requireRunnable(ctx.loaded, 'none');
  const limit = durationMs((opts.timeout as string | undefined) ?? ctx.loaded.config.hooks.timeout);
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(limit)]);
  const outcome = await hookPreBackup({
    ...ctx,
    signal,
    engine: engineOf(ctx, opts),
    trigger: 'hook',
    level: opts.level as BackupLevel | undefined,
    job: jobOf(opts),
  });
  return finish(ctx, outcome);
}
