import { describeTransaction } from '../../binlog/events.js';
import { listEvents, shown } from '../../binlog/replay.js';
import type { CommandContext } from '../context.js';
import { parseMoment } from './binlog-restore.js';

/** `binlog events NAME [--from T] [--to T]`: the database's transactions, to pick a moment or an event. */
export default async function binlogEvents(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  const name = args[0]!;
  const from = opts.from !== undefined ? Math.floor(parseMoment(String(opts.from)) / 1000) : undefined;
  const to = opts.to !== undefined ? Math.floor(parseMoment(String(opts.to)) / 1000) : undefined;
  const events = await listEvents(ctx.loaded.paths.dumpsDir, name, from, to, ctx.signal);
  if (ctx.options.json) {
    ctx.out(JSON.stringify(events, null, 2));
    return 0;
  }
  const lines = events.map((t) => describeTransaction(t, name, (s) => shown(s * 1000)));
  ctx.out(lines.length ? lines.join('\n') : `no transaction of '${name}' in the kept binlogs${from !== undefined || to !== undefined ? ' in that range' : ''}`);
  return 0;
}
