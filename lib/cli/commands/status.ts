import { durationMs } from '../../config/schema.js';
import { readHolder } from '../../lock/lock.js';
import { openPanel } from '../../panel/cpcmd.js';
import { scopeStatus } from '../../panel/scope.js';
import { computeStatus, type StatusResult } from '../../report/status.js';
import { readRunStateWithReason } from '../../report/state-file.js';
import { readVerifyState, verifyStateFile } from '../../verify/state.js';
import type { CommandContext } from '../context.js';

/** The verdict `status` prints and the nightly watchdog acts on. */
export async function currentStatus(ctx: CommandContext): Promise<StatusResult> {
  const read = readRunStateWithReason(ctx.loaded.paths.statusFile);
  let scope: { on: boolean | undefined; error?: string } | undefined;
  try {
    if (openPanel(ctx.loaded.config, { log: ctx.log })) {
      scope = { on: (await scopeStatus(ctx.loaded, { log: ctx.log, signal: ctx.signal })).enabled };
    }
  } catch (err) {
    scope = { on: undefined, error: (err as Error).message };
  }
  return computeStatus({
    state: read.state,
    stateError: read.reason,
    now: new Date(),
    maxAgeMs: durationMs(ctx.loaded.config.monitor.max_age),
    scope,
    lock: { holder: readHolder(ctx.loaded.paths.lockPath) },
    verify: { state: readVerifyState(verifyStateFile(ctx.loaded.paths.stateDir)), schedule: ctx.loaded.config.verify.schedule, sample: ctx.loaded.config.verify.sample },
  });
}

export default async function status(ctx: CommandContext): Promise<number> {
  const result = await currentStatus(ctx);
  ctx.out(ctx.options.json ? JSON.stringify(result.json, null, 2) : result.lines.join('\n'));
  // A monitoring plugin: Nagios/Icinga's 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. (The nightly
  // watchdog keeps exit 6 for stale/failed: cron and Bacula scripts branch on that.)
  return result.nagiosCode;
}
