import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { readHolder } from '../lock/lock.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { EXPORT_SCOPE, scopeStatus } from '../panel/scope.js';
import { readRunStateWithReason } from '../report/state-file.js';
import { computeStatus, type StatusResult } from '../report/status.js';

/**
 * The verdict `status` prints and the nightly watchdog acts on: the recorded run, the lock's
 * holder and the panel's exports scope, gathered here and judged by report/status.ts.
 */
export async function checkStatus(loaded: LoadedConfig, log: Logger, signal?: AbortSignal, now = new Date()): Promise<StatusResult> {
  const read = readRunStateWithReason(loaded.paths.statusFile);
  let scope: { name: string; on: boolean | undefined; error?: string } | undefined;
  try {
    if (openPanel(loaded.config, { log })) {
      scope = { name: EXPORT_SCOPE, on: (await scopeStatus(loaded, { log, signal })).enabled };
    }
  } catch (err) {
    scope = { name: EXPORT_SCOPE, on: undefined, error: (err as Error).message };
  }
  return computeStatus({
    state: read.state,
    stateError: read.reason,
    now,
    maxAgeMs: durationMs(loaded.config.monitor.max_age),
    scope,
    lock: { holder: readHolder(loaded.paths.lockPath) },
  });
}
