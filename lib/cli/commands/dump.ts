import { requireRunnable } from '../../config/checks.js';
import { dumpJob } from '../../job/backup-job.js';
import type { CommandContext } from '../context.js';
import { finish } from './outcome.js';
import { printDryRun } from '../run-report.js';

export default async function dump(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  // A dump needs no engine: only its own secrets are checked.
  requireRunnable(ctx.loaded, 'none');
  if (opts.dryRun) return printDryRun(ctx, 'none', 'dump');
  return finish(ctx, await dumpJob({ ...ctx, engine: ctx.loaded.config.engine, trigger: 'dump' }), { stats: Boolean(opts.stats) });
}
