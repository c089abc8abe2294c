import { getEngine } from '../../engine/index.js';
import { expandBackupPaths } from '../../plan/paths.js';
import { UsageError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';
import { engineTarget } from '../plan-view.js';

/** Once per server, before the first backup: restic and borg need their repository created. A second call says so, exit 0. */
export default async function repoInit(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const engine = getEngine(engineOf(ctx, opts));
  if (!engine.init) throw new UsageError(`engine ${engine.name} has no repository to create`);
  const { sources, excludes } = await expandBackupPaths(ctx.loaded.paths);
  const ctx2 = { loaded: ctx.loaded, log: ctx.log, signal: ctx.signal, sources, excludes };
  // Not engine.check(): it fails on the very thing this command creates.
  if (engine.initialised && (await engine.initialised(ctx2))) {
    ctx.out(`${engineTarget(ctx.loaded, engine.name)} is already initialised: nothing to do`);
    return 0;
  }
  ctx.out(await engine.init(ctx2));
  return 0;
}
