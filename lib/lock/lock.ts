import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../atomic-file.js';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import lockfile from 'proper-lockfile';
import { atLastResort } from '../last-resort.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';

/**
 * Which process this is, enough to tell it from a later one with the same pid: the pid alone is
 * reused after an exit or a reboot; the start time (in clock ticks since boot) and the boot id are not.
 */
export interface ProcessIdentity {
  pid: number;
  host: string;
  /** /proc/<pid>/stat field 22; absent in holder files written before it was recorded. */
  startTime?: string;
  /** /proc/sys/kernel/random/boot_id. */
  bootId?: string;
}

export interface LockHolder extends ProcessIdentity {
  command: string;
  started: string;
}

export class LockBusyError extends BackupError {
  constructor(readonly lockPath: string, readonly holder: LockHolder | undefined, waitedMs: number) {
    const who = holder ? `pid ${holder.pid} (${holder.command}, since ${holder.started})` : 'an unknown process';
    super(`another run holds ${lockPath}: ${who}; waited ${Math.round(waitedMs / 1000)}s`, ExitCode.BUSY, { lockPath, holder });
  }
}

/**
 * One run at a time, shared by the cron entry, `dump`, `run` and the Bacula pre-backup hook.
 *
 * proper-lockfile does the atomic part (mkdir), keeps the lock fresh while we run and removes it
 * on exit; a lock whose holder died without cleaning up goes stale after STALE_MS. Beside it we
 * keep who holds it (pid, command, start time) so a second run can say who is in the way, and
 * so a lock left by a dead PID on this host is taken over at once instead of after STALE_MS.
 */
const STALE_MS = 15_000;
const POLL_MS = 500;

export interface HeldLock {
  readonly path: string;
  /** The dead holder whose lock this one took over (killed, OOM, a reboot): its leftovers are the job's to clear. */
  readonly tookOver?: LockHolder;
  release(): Promise<void>;
}

export interface LockOptions {
  /** How long to wait for another run to finish before giving up with LockBusyError. */
  waitMs: number;
  /** What we are, for the other side's message ("apiscp-backup hook pre-backup"). */
  command: string;
  onWait?: (holder: LockHolder | undefined) => void;
}

export function holderFile(lockPath: string): string {
  return `${lockPath}.holder.json`;
}

export function readHolder(lockPath: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(holderFile(lockPath), 'utf8')) as LockHolder;
    return typeof h.pid === 'number' ? h : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** /proc/<pid>/stat from field 3 on (undefined: no such process). */
function statFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may itself hold spaces and ')': count from the last one.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The start time of a live process, /proc/<pid>/stat field 22 (undefined: no such process). */
export function processStartTime(pid: number): string | undefined {
  return statFields(pid)?.[22 - 3];
}

export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export function thisProcess(): ProcessIdentity {
  return { pid: process.pid, host: hostname(), startTime: processStartTime(process.pid), bootId: bootId() };
}

/**
 * Is the process this identity names gone? Only answerable on its own host. Gone: another boot
 * (a reboot since), no such pid, or the pid now belongs to a process that started at another time
 * (the pid was reused). Without a recorded start time (an older holder file) a live pid counts as it.
 */
export function processGone(who: ProcessIdentity): boolean {
  if (who.host !== hostname()) return false;
  const boot = bootId();
  if (who.bootId && boot && who.bootId !== boot) return true;
  if (!isAlive(who.pid)) return true;
  const fields = statFields(who.pid);
  // A zombie (killed, not yet reaped by its parent) runs nothing any more.
  if (fields?.[0] === 'Z') return true;
  if (who.startTime === undefined || fields === undefined) return false;
  return fields[22 - 3] !== who.startTime;
}

export async function acquireLock(lockPath: string, options: LockOptions): Promise<HeldLock> {
  mkdirSync(dirname(lockPath), { recursive: true });
  const started = Date.now();
  let announced = false;
  let tookOver: LockHolder | undefined;
  for (;;) {
    try {
      const release = await lockfile.lock(lockPath, {
        lockfilePath: lockPath,
        realpath: false,
        stale: STALE_MS,
        retries: 0,
        // A compromised lock (someone removed it) must not crash the run mid-dump; the next
        // run will see the holder file and the state and report it.
        onCompromised: () => undefined,
      });
      const holder: LockHolder = { ...thisProcess(), command: options.command, started: new Date().toISOString() };
      // Atomic (temp + rename): a waiter never reads half a holder file, or an empty one it would
      // take for "unknown holder".
      writeFileAtomic(holderFile(lockPath), JSON.stringify(holder) + '\n', { mode: 0o644 });
      // A process that must exit before its release() runs (a second signal) still frees the lock.
      const forget = atLastResort(() => {
        rmSync(holderFile(lockPath), { force: true });
        rmSync(lockPath, { recursive: true, force: true });
      });
      return {
        path: lockPath,
        tookOver,
        release: async () => {
          forget();
          rmSync(holderFile(lockPath), { force: true });
          await release().catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    }
    const holder = readHolder(lockPath);
    if (isDead(holder)) {
      // The holder died (kill -9, OOM, reboot without tmpfs /run): take the lock over now.
      if (await takeOver(lockPath, holder!)) tookOver = holder;
      continue;
    }
    const waited = Date.now() - started;
    if (waited >= options.waitMs) throw new LockBusyError(lockPath, holder, waited);
    if (!announced) {
      options.onWait?.(holder);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, options.waitMs - waited)));
  }
}

function isDead(holder: LockHolder | undefined): boolean {
  return holder !== undefined && processGone(holder);
}

const TAKEOVER_STALE_MS = 10_000;

/**
 * Remove a dead holder's lock so the next attempt can take it. Two waiters may both have seen the
 * dead holder; without care the slower one would then remove the lock the faster one just took,
 * and both would run. So the takeover itself is serialised by a second lock (mkdir is atomic),
 * and under it the holder is read again: only if the very same dead holder is still recorded is
 * anything removed (true: this caller removed it) (holder file first, so nobody reads it after the lock is gone). A waiter that
 * comes second finds the new holder (alive) or none, and goes back to waiting.
 */
export async function takeOver(lockPath: string, seen: LockHolder): Promise<boolean> {
  const mutex = `${lockPath}.takeover`;
  try {
    mkdirSync(mutex);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another waiter is taking over; a mutex left by a waiter that died meanwhile goes stale.
    if (Date.now() - (statSafe(mutex) ?? Date.now()) > TAKEOVER_STALE_MS) rmSync(mutex, { recursive: true, force: true });
    await new Promise((r) => setTimeout(r, 50));
    return false;
  }
  try {
    const now = readHolder(lockPath);
    if (now && isDead(now) && now.pid === seen.pid && now.started === seen.started) {
      rmSync(holderFile(lockPath), { force: true });
      rmSync(lockPath, { recursive: true, force: true });
      return true;
    }
    return false;
  } finally {
    rmSync(mutex, { recursive: true, force: true });
  }
}

function statSafe(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}
