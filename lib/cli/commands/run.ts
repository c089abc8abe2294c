import { requireRunnable } from '../../config/checks.js';
import { runJob } from '../../job/backup-job.js';
import type { CommandContext } from '../context.js';
import { engineOf, finish } from './outcome.js';
import { printDryRun } from '../run-report.js';

export default async function run(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  requireRunnable(ctx.loaded, engineOf(ctx, opts));
  if (opts.dryRun) return printDryRun(ctx, engineOf(ctx, opts), 'run');
  return finish(ctx, await runJob({ ...ctx, engine: engineOf(ctx, opts), trigger: 'run' }), { stats: Boolean(opts.stats) });
}
