import { getEngine } from '../../engine/index.js';
import { expandBackupPaths } from '../../plan/paths.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';

/** Once per server, before the first backup: restic and borg need their repository created. */
export default async function repoInit(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const engine = getEngine(engineOf(ctx, opts));
  if (!engine.init) throw new UsageError(`engine ${engine.name} has no repository to create`);
  const { sources, excludes } = await expandBackupPaths(ctx.loaded.paths);
  const ctx2 = { loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, sources, excludes };
  await engine.check(ctx2);
  ctx.out(await engine.init(ctx2));
  return 0;
}
