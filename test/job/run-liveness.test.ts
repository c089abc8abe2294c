/**
 * Runs that died and runs that work (issue 26): the lock's holder identity (pid + start time +
 * boot id: a reused pid is not the holder), the dead run's secret directories, and what
 * computeStatus says about a run under way or one that died. The CLI end of it, with a real
 * dump killed by SIGKILL, is test/cli/run-liveness.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../lib/exit-codes.js';
import { killOrphans } from '../../lib/job/orphans.js';
import { acquireLock, bootId, holderFile, LockBusyError, processGone, processStartTime, type LockHolder } from '../../lib/lock/lock.js';
import type { RunProgress } from '../../lib/report/run-progress.js';
import type { RunState } from '../../lib/report/run-state.js';
import { mergeRunState } from '../../lib/report/state-file.js';
import { computeStatus } from '../../lib/report/status.js';
import { removeSecretDirsOf } from '../../lib/secret-dir.js';

const dirs: string[] = [];
function scratch(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A lock as a holder that never released it leaves it: proper-lockfile's directory, fresh, and the holder file. */
function leftLock(holder: LockHolder): string {
  const lockPath = join(scratch('asb-live-lock-'), 'run.lock');
  mkdirSync(lockPath);
  writeFileSync(holderFile(lockPath), JSON.stringify(holder));
  return lockPath;
}

const holderOf = (pid: number, over: Partial<LockHolder> = {}): LockHolder => ({
  pid,
  host: hostname(),
  command: 'apiscp-backup dump',
  started: '2026-12-01T03:00:00.000Z',
  startTime: processStartTime(pid),
  bootId: bootId(),
  ...over,
});

describe('the lock tells a dead holder from a live one by pid, start time and boot id', () => {
  it('a holder naming pid 1 with a start time pid 1 does not have (its pid reused) is taken over at once', async () => {
    const real = processStartTime(1);
    expect(real).toMatch(/^\d+$/);
    const wrong = String(Number(real) + 12345);
    const lockPath = leftLock(holderOf(1, { startTime: wrong }));
    const lock = await acquireLock(lockPath, { waitMs: 0, command: 'test' });
    try {
      expect(lock.tookOver).toMatchObject({ pid: 1, startTime: wrong });
      expect(readdirSync(join(lockPath, '..')).sort()).toEqual(['run.lock', 'run.lock.holder.json']);
    } finally {
      await lock.release();
    }
  });

  it('pid 1 with its true start time and this boot is alive: the lock stays busy and names it', async () => {
    const lockPath = leftLock(holderOf(1));
    const err = await acquireLock(lockPath, { waitMs: 0, command: 'test' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockBusyError);
    expect((err as LockBusyError).message).toContain('pid 1 (apiscp-backup dump');
  });

  it('a holder recorded in another boot is dead even though a process with its pid and start time runs now', async () => {
    const live = execa('sleep', ['30']);
    try {
      const lockPath = leftLock(holderOf(live.pid!, { bootId: '00000000-0000-0000-0000-000000000000' }));
      const lock = await acquireLock(lockPath, { waitMs: 0, command: 'test' });
      expect(lock.tookOver?.pid).toBe(live.pid);
      await lock.release();
    } finally {
      live.kill();
      await live.catch(() => undefined);
    }
  });

  it('a holder killed by SIGKILL is gone; an older holder file without start time or boot id still counts by its pid', async () => {
    const child = execa('sleep', ['30']);
    const identity = holderOf(child.pid!);
    expect(processGone(identity)).toBe(false);
    child.kill('SIGKILL');
    await child.catch(() => undefined);
    expect(processGone(identity)).toBe(true);
    expect(processGone({ pid: 1, host: hostname() })).toBe(false);
    // Another host's holder cannot be judged from here: never taken for dead.
    expect(processGone({ ...identity, host: `not-${hostname()}` })).toBe(false);
    const lock = await acquireLock(leftLock(identity), { waitMs: 0, command: 'test' });
    expect(lock.tookOver?.pid).toBe(identity.pid);
    await lock.release();
  });
});

describe('removeSecretDirsOf', () => {
  it('removes the dead pid\'s asb-* directories and nobody else\'s', () => {
    const parent = scratch('asb-live-secrets-');
    for (const name of ['asb-mysql-4242-abc123', 'asb-mysql-4242-zz9', 'asb-mysql-42420-abc', 'asb-mysql-1-4242-x', 'other-4242-abc']) {
      mkdirSync(join(parent, name));
      writeFileSync(join(parent, name, 'client.cnf'), 'password=x\n');
    }
    expect(removeSecretDirsOf(4242, 'asb-', parent)).toBe(2);
    expect(readdirSync(parent).sort()).toEqual(['asb-mysql-1-4242-x', 'asb-mysql-42420-abc', 'other-4242-abc']);
    expect(existsSync(join(parent, 'asb-mysql-4242-abc123'))).toBe(false);
  });
});

const HOUR = 3_600_000;
const NOW = new Date('2026-12-07T12:00:00Z');
const MAX_AGE = 26 * HOUR;
const hoursAgo = (h: number): string => new Date(NOW.getTime() - h * HOUR).toISOString();

/** A run recorded over an earlier good one (so lastSuccessAt is set). */
function finished(over: Partial<RunState> = {}): RunState {
  const earlier = mergeRunState(undefined, { version: 1, engine: 'none', trigger: 'dump', startedAt: hoursAgo(10), finishedAt: hoursAgo(9.5), status: 'ok', problems: [] });
  return mergeRunState(earlier, {
    version: 1,
    runId: '20261207T030000Z',
    engine: 'none',
    trigger: 'dump',
    startedAt: hoursAgo(9),
    finishedAt: hoursAgo(8),
    durationMs: HOUR,
    status: 'ok',
    problems: [],
    dumps: { ok: 3, failed: 0, bytes: 3 << 20, databases: [] },
    ...over,
  });
}

function progress(over: Partial<RunProgress> = {}): RunProgress {
  return {
    version: 1,
    process: { pid: 4242, host: 'h', startTime: '777', bootId: 'b' },
    command: 'apiscp-backup dump',
    trigger: 'dump',
    engine: 'none',
    startedAt: hoursAgo(0.25),
    updatedAt: hoursAgo(0.01),
    phase: 'dumps',
    dumps: { done: 2, total: 5, current: 'mysql big', bytes: 40 << 20 },
    ...over,
  };
}

describe('computeStatus: a run under way, a run that died', () => {
  it('a run under way: shown with since, phase, databases done of total and bytes; the verdict follows the last finished run', () => {
    const run = progress();
    const r = computeStatus({ state: finished(), now: NOW, maxAgeMs: MAX_AGE, lock: {}, progress: { run, gone: false } });
    expect(r.nagiosCode).toBe(0);
    expect(r.lines[0]).toMatch(/^OK: last dumps 8h ago .*a run is in progress/);
    expect(r.json.problems).toEqual([]);
    expect(r.lines).toContain(`running: apiscp-backup dump since ${run.startedAt} (15m), pid 4242, phase dumps, databases 2/5, 40 MB written`);
    expect(r.json.running).toMatchObject({ since: run.startedAt, pid: 4242, phase: 'dumps', databases: { done: 2, total: 5 }, bytes: 40 << 20 });
    expect(r.json.died).toBeNull();
    // A failed or stale last run stays CRITICAL while the next one works.
    const failed = computeStatus({ state: finished({ status: 'failed', problems: ['mysql big: exited with 2'] }), now: NOW, maxAgeMs: MAX_AGE, lock: {}, progress: { run, gone: false } });
    expect(failed.nagiosCode).toBe(2);
    expect(failed.lines[0]).toMatch(/^CRITICAL: last run failed: mysql big: exited with 2/);
    expect(failed.json.running).toMatchObject({ phase: 'dumps' });
    const stale = computeStatus({ state: finished(), now: new Date(NOW.getTime() + 30 * HOUR), maxAgeMs: MAX_AGE, lock: {}, progress: { run, gone: false } });
    expect(stale.nagiosCode).toBe(2);
  });

  it('a run that died: CRITICAL "the run started at … died (pid …, last phase …)", first, whatever the last finished run was', () => {
    const run = progress({ phase: 'backup' });
    const r = computeStatus({ state: finished(), now: NOW, maxAgeMs: MAX_AGE, lock: {}, progress: { run, gone: true } });
    expect(r.nagiosCode).toBe(2);
    expect(r.exitCode).toBe(ExitCode.STALE);
    expect(r.lines[0]).toMatch(new RegExp(`^CRITICAL: the run started at ${run.startedAt} died \\(pid 4242, last phase backup\\)`));
    expect(r.json.running).toBeNull();
    expect(r.json.died).toEqual({ since: run.startedAt, pid: 4242, phase: 'backup', command: 'apiscp-backup dump' });
    // A status.json still saying "running" adds no second "never finished" line for the same death.
    const running = finished({ status: 'running', startedAt: run.startedAt, finishedAt: undefined });
    const both = computeStatus({ state: running, now: NOW, maxAgeMs: MAX_AGE, lock: {}, progress: { run, gone: true } });
    expect(both.json.problems).toEqual([`the run started at ${run.startedAt} died (pid 4242, last phase backup)`]);
  });

  it('after the takeover recorded the dead run as failed: CRITICAL until a good run follows, lastSuccessAt kept', () => {
    const good = finished();
    const text = `the run started at ${hoursAgo(2)} died (pid 4242, last phase dumps)`;
    const dead = mergeRunState(good, { version: 1, engine: 'none', trigger: 'dump', startedAt: hoursAgo(2), finishedAt: hoursAgo(1), status: 'failed', problems: [text] });
    expect(dead.lastSuccessAt).toBe(good.lastSuccessAt);
    const r = computeStatus({ state: dead, now: NOW, maxAgeMs: MAX_AGE, lock: {} });
    expect(r.nagiosCode).toBe(2);
    expect(r.lines[0]).toMatch(/^CRITICAL: last run failed: the run started at .* died \(pid 4242, last phase dumps\)/);
    const after = mergeRunState(dead, { ...good, startedAt: hoursAgo(0.5), finishedAt: hoursAgo(0.4) });
    expect(computeStatus({ state: after, now: NOW, maxAgeMs: MAX_AGE, lock: {} }).nagiosCode).toBe(0);
  });
});

describe('computeStatus: a job that found the lock busy', () => {
  const holder: LockHolder = { pid: 4242, host: 'h', command: 'apiscp-backup nightly (bacula)', started: hoursAgo(3) };
  const busy = {
    version: 1 as const,
    at: hoursAgo(2),
    trigger: 'hook',
    command: 'apiscp-backup hook pre-backup (job 7)',
    job: { id: '7' },
    holder,
    message: `another run holds /run/apiscp-backup.lock: pid 4242 (apiscp-backup nightly (bacula), since ${hoursAgo(3)}); waited 600s`,
  };

  it('CRITICAL naming the job and the holder, even after the holder\'s own run (started before it) is recorded as good', () => {
    const holderRun = finished({ startedAt: hoursAgo(3), finishedAt: hoursAgo(1) });
    const r = computeStatus({ state: holderRun, now: NOW, maxAgeMs: MAX_AGE, lock: {}, busy });
    expect(r.nagiosCode).toBe(2);
    expect(r.lines[0]).toMatch(new RegExp(`^CRITICAL: apiscp-backup hook pre-backup \\(job 7\\) at ${busy.at} did not run: another run holds /run/apiscp-backup.lock: pid 4242`));
    expect(r.json.busy).toEqual({ at: busy.at, command: busy.command, job: { id: '7' }, holder });
  });

  it('cleared by a good run that started after it; not by a failed one', () => {
    const later = finished({ startedAt: hoursAgo(1), finishedAt: hoursAgo(0.5) });
    const ok = computeStatus({ state: later, now: NOW, maxAgeMs: MAX_AGE, lock: {}, busy });
    expect(ok.nagiosCode).toBe(0);
    expect(ok.json.busy).toBeNull();
    const failed = computeStatus({ state: finished({ startedAt: hoursAgo(1), status: 'failed', problems: ['x'] }), now: NOW, maxAgeMs: MAX_AGE, lock: {}, busy });
    expect(failed.json.problems).toEqual(expect.arrayContaining([expect.stringMatching(/did not run: another run holds/), 'last run failed: x']));
  });
});

describe('killOrphans: the process groups a dead run recorded', () => {
  const alive = (pid: number): boolean => {
    try {
      return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const pgrpOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  };

  it('kills every member of a group whose leader is the recorded process, and of one whose leader exited; spares a leader with another start time', async () => {
    // A group whose leader (sh) has exited: its sleep stays, in the group sh led.
    const led = execa('sh', ['-c', 'sleep 300 >/dev/null 2>&1 & echo $!'], { detached: true, reject: false });
    const ledStart = processStartTime(led.pid!)!;
    const orphan = Number(String((await led).stdout).trim());
    expect(pgrpOf(orphan)).toBe(led.pid);
    // A group whose leader runs on; a stranger whose pid was "recorded" with another start time.
    const leader = execa('sleep', ['300'], { detached: true, reject: false });
    const stranger = execa('sleep', ['300'], { detached: true, reject: false });
    try {
      const killed = killOrphans([
        { pgid: led.pid!, startTime: ledStart },
        { pgid: leader.pid!, startTime: processStartTime(leader.pid!)! },
        { pgid: stranger.pid!, startTime: String(Number(processStartTime(stranger.pid!)) + 1) },
      ]);
      expect(killed.map((k) => k.pid).sort()).toEqual([orphan, leader.pid!].sort());
      await until(() => !alive(orphan) && !alive(leader.pid!));
      expect([alive(orphan), alive(leader.pid!), alive(stranger.pid!)]).toEqual([false, false, true]);
    } finally {
      for (const p of [orphan, leader.pid!, stranger.pid!]) try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    }
  });
});
