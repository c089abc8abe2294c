import { scopeDisable, scopeRestore, scopeStatus } from '../../panel/scope.js';
import type { CommandContext } from '../context.js';

export async function status(ctx: CommandContext): Promise<number> {
  const s = await scopeStatus(ctx.loaded, { log: ctx.log, signal: ctx.signal });
  if (ctx.options.json) ctx.out(JSON.stringify(s, null, 2));
  else {
    ctx.out(`${s.scope}: ${s.enabled ? 'on (the panel exports databases nightly itself)' : 'off'}`);
    if (s.record) ctx.out(`previous value recorded ${s.record.recordedAt}: ${s.record.previous ? 'on' : 'off'} (scope restore puts it back)`);
  }
  return 0;
}

export async function disable(ctx: CommandContext): Promise<number> {
  const change = await scopeDisable(ctx.loaded, { log: ctx.log, signal: ctx.signal });
  ctx.out(ctx.options.json ? JSON.stringify(change, null, 2) : change.message);
  return 0;
}

export async function restore(ctx: CommandContext): Promise<number> {
  const change = await scopeRestore(ctx.loaded, { log: ctx.log, signal: ctx.signal });
  ctx.out(ctx.options.json ? JSON.stringify(change, null, 2) : change.message);
  return 0;
}
