import { readFileSync } from 'node:fs';
import { underRoot } from '../../config/paths.js';
import { durationMs } from '../../config/schema.js';
import { addinTemplateDrift } from '../../engine/bacula-addin.js';
import { readHolder } from '../../lock/lock.js';
import { openPanel } from '../../panel/cpcmd.js';
import { scopeStatus } from '../../panel/scope.js';
import { computeStatus, type StatusInput, type StatusResult } from '../../report/status.js';
import { readRunStateWithReason } from '../../report/state-file.js';
import { readVerifyState, verifyStateFile } from '../../verify/state.js';
import type { CommandContext } from '../context.js';

/** The verdict `status` prints and the nightly watchdog acts on. */
export async function currentStatus(ctx: CommandContext): Promise<StatusResult> {
  const read = readRunStateWithReason(ctx.loaded.paths.statusFile);
  let scope: StatusInput['scope'];
  try {
    if (openPanel(ctx.loaded.config, { log: ctx.log })) {
      const s = await scopeStatus(ctx.loaded, { log: ctx.log, signal: ctx.signal });
      scope = { on: s.enabled, name: s.scope, nightly: { text: s.nightly.text, stopped: s.nightly.stopped } };
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
    warnings: [addinTemplateDrift(underRoot(ctx.loaded.paths.root, ctx.loaded.config.bacula.etc), readIfThere)].filter((w): w is string => w !== undefined),
  });
}

export default async function status(ctx: CommandContext): Promise<number> {
  const result = await currentStatus(ctx);
  ctx.out(ctx.options.json ? JSON.stringify(result.json, null, 2) : result.lines.join('\n'));
  // A monitoring plugin: Nagios/Icinga's 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. (The nightly
  // watchdog keeps exit 6 for stale/failed: cron and Bacula scripts branch on that.)
  return result.nagiosCode;
}

function readIfThere(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
