import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProcessIdentity } from '../lock/lock.js';
import type { LockWait } from '../model/kind.js';
import { lockWaitText } from '../kinds/mysql/index.js';

/**
 * What a job is doing right now, in `<state.dir>/running.json`: written (atomically) by the job
 * at each phase and while dumps finish, removed when it ends. Left behind, it names a run that
 * died (SIGKILL, OOM, a reboot): the process it names is gone.
 */
export interface RunProgress {
  readonly version: 1;
  /** The job's process, to tell a live run from a dead one whose pid was reused. */
  readonly process: ProcessIdentity;
  readonly command: string;
  readonly trigger: string;
  readonly engine: string;
  readonly startedAt: string;
  readonly updatedAt: string;
  /** 'starting', 'dumps', 'backup', 'prune', 'recording'. */
  readonly phase: string;
  readonly runId?: string;
  readonly dumps?: { readonly done: number; readonly total: number; readonly current?: string; readonly bytes?: number };
  /** The process groups the job's children lead (leader pid = group id, its start time): what a SIGKILL orphans. */
  readonly groups?: readonly { readonly pgid: number; readonly startTime: string }[];
  /** Dumps waiting longer than a few seconds for a lock another session holds, by dump ("mysql 'db'"). */
  readonly lockWaits?: Readonly<Record<string, LockWait>>;
}

export function runProgressFile(stateDir: string): string {
  return join(stateDir, 'running.json');
}

/** undefined: no run is going on (or the file is unreadable: nothing to say about a run then). */
export function readRunProgress(file: string): RunProgress | undefined {
  try {
    const p = JSON.parse(readFileSync(file, 'utf8')) as RunProgress;
    return p && p.version === 1 && typeof p.process?.pid === 'number' && typeof p.startedAt === 'string' && typeof p.phase === 'string' ? p : undefined;
  } catch {
    return undefined;
  }
}

/** The one line `status` and the takeover warning say about a run that died. */
export function diedText(p: Pick<RunProgress, 'startedAt' | 'phase' | 'process'>): string {
  return `the run started at ${p.startedAt} died (pid ${p.process.pid}, last phase ${p.phase})`;
}

/** status's line for each dump that waits for a lock while the run works. */
export function lockWaitLines(p: Pick<RunProgress, 'lockWaits'>): string[] {
  return Object.entries(p.lockWaits ?? {}).map(([what, wait]) => `${what}: ${lockWaitText(wait)}`);
}
