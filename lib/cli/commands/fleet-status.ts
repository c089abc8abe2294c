import { fleetStatus } from '../../fleet/status.js';
import type { CommandContext } from '../context.js';

/** Nagios-style first line then one line per client, or JSON; exit 6 when any client is stale or failed. */
export default async function fleetStatusCommand(ctx: CommandContext): Promise<number> {
  const result = await fleetStatus(ctx.loaded, { signal: ctx.signal });
  ctx.out(ctx.options.json ? JSON.stringify(result.json, null, 2) : result.lines.join('\n'));
  return result.exitCode;
}
