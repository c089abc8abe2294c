import { requireRunnable } from '../../config/checks.js';
import { dumpJob } from '../../job/backup-job.js';
import type { CommandContext } from '../context.js';
import { finish } from './outcome.js';
import { printDryRun } from '../run-report.js';
import { withProgress } from '../progress/watch.js';

export default async function dump(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  // A dump needs no engine: only its own secrets are checked.
  requireRunnable(ctx.loaded, 'none');
  if (opts.dryRun) return printDryRun(ctx, 'none', 'dump');
  const outcome = await withProgress(ctx, 'dump', undefined, (watch) => dumpJob({ ...ctx, engine: ctx.loaded.config.engine, trigger: 'dump', watch }));
  return finish(ctx, outcome, { stats: Boolean(opts.stats) });
}
