import { TerminalProgress } from '../../report/progress-view.js';
import type { CommandContext } from '../context.js';

/**
 * Run `body` with the live progress block on stderr when there is a terminal to show it on (not
 * under cron, not with --json or --quiet); the block is gone, its phase lines left, before the
 * caller prints its last line.
 */
export async function withProgress<T>(ctx: CommandContext, title: string, engine: string | undefined, body: (watch: TerminalProgress | undefined) => Promise<T>): Promise<T> {
  const watch = ctx.interactive && !ctx.options.json ? new TerminalProgress(process.stderr, title, { engine }) : undefined;
  try {
    return await body(watch);
  } finally {
    watch?.stop();
  }
}
