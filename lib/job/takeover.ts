import { readdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { EngineName } from '../engine/types.js';
import { bootId, processGone, type HeldLock } from '../lock/lock.js';
import type { Logger } from '../log.js';
import { diedText, readRunProgress, runProgressFile, type RunProgress } from '../report/run-progress.js';
import { runState } from '../report/run-state.js';
import { removeSecretDirsOf } from '../secret-dir.js';
import { warning, WarningCodes, type Warning } from '../warnings.js';
import { killOrphans } from './orphans.js';
import { recordRun } from './record.js';

/**
 * With the lock held: did a run die before us (its lock taken over, or its progress file naming a
 * process that is gone, e.g. after a reboot emptied /run)? Then clear what it left (its dump tools
 * still running, orphaned: the process groups its progress file recorded; its secret
 * directories, its temp files in state.dir, its progress file; its `.inprogress` run directory
 * goes when the dumps open theirs), record it as failed (status says it died until a good run
 * follows; lastSuccessAt is kept) and return the one warning this run carries about it.
 */
export async function clearDeadRun(loaded: LoadedConfig, log: Logger, lock: HeldLock): Promise<Warning | undefined> {
  const file = runProgressFile(loaded.paths.stateDir);
  const left = readRunProgress(file);
  const dead: RunProgress | undefined =
    left && processGone(left.process)
      ? left
      : lock.tookOver
      ? { version: 1, process: lock.tookOver, command: lock.tookOver.command, trigger: 'unknown', engine: 'none', startedAt: lock.tookOver.started, updatedAt: lock.tookOver.started, phase: 'unknown' }
      : undefined;
  if (!dead) return undefined;
  const pid = dead.process.pid;
  // First: orphaned dumpers and compressors would go on writing into what is removed next.
  // Only in the boot they were recorded in: after a reboot the numbers name other processes.
  const sameBoot = dead.process.host === hostname() && dead.process.bootId !== undefined && dead.process.bootId === bootId();
  const killed = sameBoot ? killOrphans(dead.groups) : [];
  removeSecretDirsOf(pid);
  removeTempFilesOf(loaded.paths.stateDir, pid);
  rmSync(file, { force: true });
  const text = diedText(dead);
  const orphans = killed.length ? `; killed ${killed.length} process(es) it left running (${[...new Set(killed.map((k) => k.comm))].join(', ')})` : '';
  log.warn(`${text}; its lock and leftovers were cleared${orphans}`);
  const engine = (dead.engine || 'none') as EngineName;
  await recordRun(loaded, log, runState({ runId: dead.runId, engine, trigger: dead.trigger, startedAt: dead.startedAt, problems: [text], failed: true }), { ping: false }).catch(() => undefined);
  return warning(WarningCodes.RUN_DIED, `${text}; this run took over and cleared what it left${orphans}`);
}

/** writeFileAtomic's temp names carry the writer's pid (`.<name>.tmp-<pid>-<hex>`). */
function removeTempFilesOf(dir: string, pid: number): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith('.') && name.includes(`.tmp-${pid}-`)) rmSync(join(dir, name), { force: true });
}
