import { runDemo } from '../../demo/run-demo.js';
import type { EngineName } from '../../engine/types.js';
import type { CommandContext } from '../context.js';

export default async function demo(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  return runDemo({ engine: (opts.engine as EngineName | undefined) ?? 'duplicity', keep: Boolean(opts.keep), out: (line) => ctx.out(line) });
}
