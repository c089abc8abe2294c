import { expandBackupPaths } from '../../plan/paths.js';
import type { CommandContext } from '../context.js';

/** One path per line: Bacula's FileSet runs this on the client (`File = "\\|…"`) at job time. */
export default async function paths(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const { sources, excludes } = await expandBackupPaths(ctx.loaded.paths);
  const list = opts.exclude ? excludes : sources;
  if (ctx.options.json) ctx.out(JSON.stringify({ sources, excludes }, null, 2));
  else if (list.length) ctx.out(list.join('\n'));
  return 0;
}
