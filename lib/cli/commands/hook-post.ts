import { hookPostBackup } from '../../job/backup-job.js';
import type { BackupLevel } from '../../engine/types.js';
import type { CommandContext } from '../context.js';
import { engineOf, finish, jobOf } from './outcome.js';

export default async function hookPost(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const outcome = await hookPostBackup({
    ...ctx,
    engine: engineOf(ctx, opts),
    trigger: 'hook',
    level: opts.level as BackupLevel | undefined,
    job: jobOf(opts),
    status: opts.status as string | undefined,
  });
  return finish(ctx, outcome);
}
