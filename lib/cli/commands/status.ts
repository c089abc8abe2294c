import { checkStatus } from '../../job/status-check.js';
import type { CommandContext } from '../context.js';

export default async function status(ctx: CommandContext): Promise<number> {
  const result = await checkStatus(ctx.loaded, ctx.log, ctx.signal);
  ctx.out(ctx.options.json ? JSON.stringify(result.json, null, 2) : result.lines.join('\n'));
  // A monitoring plugin: Nagios/Icinga's 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. (The nightly
  // watchdog keeps exit 6 for stale/failed: cron and Bacula scripts branch on that.)
  return result.nagiosCode;
}
