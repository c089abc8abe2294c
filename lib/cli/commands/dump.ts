import { requireRunnable } from '../../config/checks.js';
import { dumpJob } from '../../job/backup-job.js';
import type { CommandContext } from '../context.js';
import { finish } from './outcome.js';

export default async function dump(ctx: CommandContext): Promise<number> {
  // A dump needs no engine: only its own secrets are checked.
  requireRunnable(ctx.loaded, 'none');
  return finish(ctx, await dumpJob({ ...ctx, engine: ctx.loaded.config.engine, trigger: 'dump' }));
}
