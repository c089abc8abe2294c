import { requireRunnable } from '../../config/checks.js';
import { runJob } from '../../job/backup-job.js';
import type { CommandContext } from '../context.js';
import { engineOf, finish } from './outcome.js';
import { printDryRun } from '../run-report.js';
import { withProgress } from '../progress/watch.js';

export default async function run(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  requireRunnable(ctx.loaded, engineOf(ctx, opts));
  if (opts.dryRun) return printDryRun(ctx, engineOf(ctx, opts), 'run');
  const engine = engineOf(ctx, opts);
  const outcome = await withProgress(ctx, 'run', engine, (watch) => runJob({ ...ctx, engine, trigger: 'run', watch }));
  return finish(ctx, outcome, { stats: Boolean(opts.stats) });
}
