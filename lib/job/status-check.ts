import { readFileSync } from 'node:fs';
import type { LoadedConfig } from '../config/load.js';
import { underRoot } from '../config/paths.js';
import { durationMs } from '../config/schema.js';
import { addinTemplateDrift } from '../engine/bacula-addin.js';
import { hostSideRetention } from '../engine/remote.js';
import { processGone, readHolder } from '../lock/lock.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { EXPORT_SCOPE, scopeStatus } from '../panel/scope.js';
import { readRunProgress, runProgressFile, type RunProgress } from '../report/run-progress.js';
import { busyFile, readBusyFailure } from '../report/busy-file.js';
import { readRunStateWithReason } from '../report/state-file.js';
import { readWindow } from '../binlog/window.js';
import { computeStatus, type StatusInput, type StatusResult } from '../report/status.js';
import { readVerifyState, verifyStateFile } from '../model/verify-state.js';

/**
 * The verdict `status` prints and the nightly watchdog acts on: the recorded run, the lock's
 * holder, the panel's exports scope and the Bacula add-in's template, gathered here and judged
 * by report/status.ts.
 */
export async function checkStatus(loaded: LoadedConfig, log: Logger, signal?: AbortSignal, now = new Date()): Promise<StatusResult> {
  const read = readRunStateWithReason(loaded.paths.statusFile);
  let scope: StatusInput['scope'];
  try {
    if (openPanel(loaded.config, { log })) {
      const s = await scopeStatus(loaded, { log, signal });
      scope = { on: s.enabled, name: s.scope, nightly: { text: s.nightly.text, stopped: s.nightly.stopped } };
    }
  } catch (err) {
    scope = { on: undefined, name: EXPORT_SCOPE, error: (err as Error).message };
  }
  const holder = readHolder(loaded.paths.lockPath);
  return computeStatus({
    state: read.state,
    stateError: read.reason,
    now,
    maxAgeMs: durationMs(loaded.config.monitor.max_age),
    scope,
    lock: { holder: holder && !processGone(holder) ? holder : undefined },
    busy: readBusyFailure(busyFile(loaded.paths.stateDir)),
    progress: progressOf(readRunProgress(runProgressFile(loaded.paths.stateDir)), holder),
    verify: { state: readVerifyState(verifyStateFile(loaded.paths.stateDir)), schedule: loaded.config.verify.schedule, sample: loaded.config.verify.sample },
    pitr: readWindow(loaded.paths.dumpsDir, now.getTime()),
    retention: hostSideRetention(loaded),
    warnings: [addinTemplateDrift(underRoot(loaded.paths.root, loaded.config.bacula.etc), readIfThere)].filter((w): w is string => w !== undefined),
  });
}

/**
 * The job under way, or the one that died: its progress file, else (a holder file alone, from a
 * job killed before it wrote one) the lock's dead holder.
 */
function progressOf(run: RunProgress | undefined, holder: ReturnType<typeof readHolder>): StatusInput['progress'] {
  if (run) return { run, gone: processGone(run.process) };
  if (holder && processGone(holder)) {
    return { run: { version: 1, process: holder, command: holder.command, trigger: 'unknown', engine: 'unknown', startedAt: holder.started, updatedAt: holder.started, phase: 'unknown' }, gone: true };
  }
  return undefined;
}

function readIfThere(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
