import { join } from 'node:path';
import type { LockWait } from '../model/kind.js';
import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { sidecarFileName, writeAclSidecar } from '../engine/acl-sidecar.js';
import { getEngine } from '../engine/index.js';
import type { BackupLevel, Engine, EngineContext, EngineName, EngineResult } from '../engine/types.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { acquireLock, LockBusyError, type HeldLock } from '../lock/lock.js';
import { busyFile, busyText, readBusyFailure, writeBusyFailure } from '../report/busy-file.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { ensureScopeDisabled } from '../panel/scope.js';
import { expandBackupPaths } from '../plan/paths.js';
import { ping } from '../report/heartbeat.js';
import { runState, type RunState } from '../report/run-state.js';
import { recordWarning, warning, WarningCodes, type Warning } from '../warnings.js';
import { dumpProblems, dumpStep, dumpsState, dumpWarnings, type DumpStepResult } from './dump-step.js';
import { addPin, PinsError, removePin } from './pins.js';
import { runHookPoint, type HookFacts } from './user-hooks.js';
import { previousState, recordRun } from './record.js';
import { withPriority } from '../proc/priority.js';
import { ProgressFile } from './run-progress.js';
import type { JobWatch } from '../report/progress-view.js';
import type { DumpEvent } from '../dumps/run-dumps.js';
import { clearDeadRun } from './takeover.js';

export interface JobInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly interactive: boolean;
  readonly engine: EngineName;
  readonly trigger: 'dump' | 'hook' | 'run' | 'cron';
  readonly level?: BackupLevel;
  readonly job?: { name?: string; id?: string; client?: string };
  /** false: do not ping the heartbeat at the end (nightly pings once, after the verification). */
  readonly ping?: boolean;
  /** The engine and the dumps (default: the real ones). Tests give stand-ins to drive each outcome. */
  readonly steps?: Partial<JobSteps>;
  /** Databases done of total as dumps finish (set by the job itself for its progress file). */
  readonly onDumpProgress?: (done: number, total: number, current: string) => void;
  /** A dump waits for a lock (undefined: no longer): the progress file shows it. */
  readonly onLockWait?: (what: string, wait: LockWait | undefined) => void;
  /** The terminal's progress display (the CLI on a TTY): told what the progress file is told, and each dump's start and end. */
  readonly watch?: JobWatch;
  /** Each dump's start and end (set by the job itself for `watch`). */
  readonly onDump?: (event: DumpEvent) => void;
}

/** The two steps a job delegates: everything else (lock, hooks, record) is the job's own. */
export interface JobSteps {
  readonly engine: (name: EngineName) => Engine;
  readonly dumps: (input: JobInput) => Promise<DumpStepResult>;
}

function stepsOf(input: JobInput): JobSteps {
  return { engine: input.steps?.engine ?? getEngine, dumps: input.steps?.dumps ?? dumpStep };
}

export interface JobOutcome {
  readonly exitCode: number;
  readonly state: RunState;
}

/**
 * Where pre-backup leaves the ACL/xattr sidecar for engines that lose them (inside dumps.dir).
 * The name must be the one `restore acls` looks for (fs-acls.zst/.gz), or a restore finds nothing.
 */
export function sidecarPath(loaded: LoadedConfig): string {
  return join(loaded.paths.dumpsDir, sidecarFileName());
}

export async function takeLock(input: Pick<JobInput, 'loaded' | 'log'>, command: string): Promise<HeldLock> {
  return acquireLock(input.loaded.paths.lockPath, {
    waitMs: durationMs(input.loaded.config.lock.wait),
    command,
    onWait: (h) => input.log.info(`waiting for the lock held by ${h ? `pid ${h.pid} (${h.command})` : 'another run'}`),
  });
}

/** A job under way: its lock, its progress file, and the warning about a dead run it took over from. */
interface Started {
  readonly lock: HeldLock;
  readonly progress: ProgressFile;
  readonly died?: Warning;
  /** The job's input with the dumps reporting to the progress file. */
  readonly input: JobInput;
  end(): Promise<void>;
}

async function startJob(input: JobInput, command: string): Promise<Started> {
  const lock = await takeLock(input, command).catch((err: unknown) => {
    if (err instanceof LockBusyError) recordBusy(input, command, err);
    throw err;
  });
  try {
    // Before our progress file replaces the dead run's: it names the dead run's pid and phase.
    const died = await clearDeadRun(input.loaded, input.log, lock);
    const progress = new ProgressFile(input.loaded, input.log, { command, trigger: input.trigger, engine: input.engine }, input.watch);
    return {
      lock,
      progress,
      died,
      input: {
        ...input,
        onDumpProgress: (done, total, current) => progress.dumps(done, total, current),
        onLockWait: (what, wait) => progress.lockWait(what, wait),
        onDump: (event) => {
          progress.dump(event);
          input.watch?.dump(event);
        },
      },
      end: async () => {
        progress.end();
        await lock.release();
      },
    };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/**
 * A job that could not run because another held the lock is a failure `status` and the
 * post-backup hook must name, with the holder (report/busy-file.ts: why not status.json).
 */
function recordBusy(input: JobInput, command: string, err: LockBusyError): void {
  try {
    writeBusyFailure(busyFile(input.loaded.paths.stateDir), {
      version: 1,
      at: new Date().toISOString(),
      trigger: input.trigger,
      command,
      job: input.job && { name: input.job.name, id: input.job.id },
      holder: err.holder,
      message: err.message,
    });
  } catch (e) {
    input.log.warn(`cannot write the busy record: ${(e as Error).message}`);
  }
}

function withWarning(state: RunState, w: Warning | undefined): RunState {
  if (!w) return state;
  return { ...state, warnings: [...(state.warnings ?? []), w], status: state.status === 'ok' ? 'warning' : state.status };
}

export async function engineContext(input: JobInput): Promise<EngineContext> {
  const { sources, excludes } = await expandBackupPaths(input.loaded.paths);
  const watch = input.watch;
  return { loaded: input.loaded, log: input.log, signal: input.signal, sources, excludes, level: input.level, ...(watch ? { onProgress: (text: string) => watch.engine(text) } : {}) };
}

/**
 * pre-backup: with the lock held, make sure the panel's own nightly export is still off (a panel
 * update can turn it back on), dump every database, and write the ACL sidecar when the engine
 * would lose ACLs. The result says whether the backup may go ahead.
 */
export async function preBackup(input: JobInput, engine: Engine): Promise<{ state: RunState; proceed: boolean }> {
  const { loaded, log, signal } = input;
  const startedAt = new Date().toISOString();
  await ping('start', loaded.config.monitor.heartbeat, { log });
  const problems: string[] = [];
  const warnings: Warning[] = [];
  const panel = openPanel(loaded.config, { log, signal });
  if (panel) {
    const said = await ensureScopeDisabled(loaded, { log, signal }).then(
      (w) => w,
      (err: BackupError) => warning(WarningCodes.SCOPE_UNKNOWN, `cannot check the panel's export scope: ${err.message}`),
    );
    if (said) {
      log.warn(said.message);
      warnings.push(said);
    }
  }
  const hooked = await dumpsWithHooks(input);
  if (!hooked.result) {
    // before_dumps failed: no dumps, no backup.
    const state = runState({
      engine: input.engine, trigger: input.trigger, level: input.level, job: input.job, startedAt,
      backup: { status: 'skipped', detail: hooked.failure }, problems: [...problems, hooked.failure!], failed: true, finished: false,
    });
    return { state, proceed: false };
  }
  const { result } = hooked;
  problems.push(...dumpProblems(result));
  warnings.push(...dumpWarnings(result));
  const dumpsOk = result.ok;
  if (hooked.failure) problems.push(hooked.failure);
  const proceed = !hooked.failure && (dumpsOk || loaded.config.on_dump_failure === 'warn');
  // warn: the files are worth saving even without every fresh dump, but the admin must hear
  // that this backup holds only older dumps (if any) of the databases that failed. `run` still
  // exits DUMP_FAILED; the hook exits 0 (non-zero would fail the Bacula job) and prints this.
  if (!dumpsOk && proceed) problems.push('on_dump_failure is warn: backed up anyway; for the databases above this backup holds only older dumps, if any');
  if (!engine.keepsAcls && proceed) {
    const ctx = await engineContext(input);
    const trees = ctx.sources.filter((s) => !s.startsWith(loaded.paths.dumpsDir));
    const sidecar = await writeAclSidecar(trees, sidecarPath(loaded), ctx.excludes);
    if (sidecar.warnings.length) {
      const w = warning(WarningCodes.FILES_VANISHED, `ACL sidecar: ${sidecar.warnings.length} file(s) vanished while it was written (a live site), e.g. ${sidecar.warnings[0]}`);
      log.warn(w.message, { vanished: sidecar.warnings.slice(0, 50) });
      warnings.push(w);
    }
  }
  const state = runState({
    runId: result.runId,
    engine: input.engine,
    trigger: input.trigger,
    level: input.level,
    job: input.job,
    startedAt,
    dumps: dumpsState(result),
    backup: proceed ? { status: 'pending' } : { status: 'skipped', detail: hooked.failure ?? 'dumps failed (on_dump_failure: fail)' },
    problems,
    warnings,
    failed: !proceed,
    degraded: !dumpsOk,
    finished: false,
  });
  return { state, proceed };
}

function factsOf(input: JobInput, state?: RunState): HookFacts {
  return {
    engine: input.engine,
    trigger: input.trigger,
    level: state?.level ?? input.level,
    job: input.job?.name,
    jobId: input.job?.id,
    runId: state?.runId,
    runDir: state?.runId ? join(input.loaded.paths.dumpsDir, state.runId) : undefined,
    status: state?.status,
    error: state?.problems[0],
  };
}

/**
 * hooks.before_dumps → dumps → hooks.after_dumps (only after dumps good enough to back up).
 * No result: before_dumps failed and nothing was dumped. A failure fails the run.
 */
async function dumpsWithHooks(input: JobInput): Promise<{ result?: DumpStepResult; failure?: string }> {
  const { loaded, log, signal } = input;
  const before = await runHookPoint(loaded, 'before_dumps', factsOf(input), { log, signal });
  if (before.failure) return { failure: before.failure };
  const result = await stepsOf(input).dumps(input);
  if (!result.ok && loaded.config.on_dump_failure === 'fail') return { result };
  const facts = { ...factsOf(input), runId: result.runId, runDir: result.dir, status: result.ok ? 'ok' : 'warning' };
  const after = await runHookPoint(loaded, 'after_dumps', facts, { log, signal });
  return { result, failure: after.failure };
}

/**
 * The end of a run: hooks.on_failure when it failed, else hooks.after_backup (skipped for a
 * plain `dump`: there was no backup). Their failures are warnings on the state they report.
 */
async function endHooks(input: JobInput, state: RunState, options: { afterBackup: boolean }): Promise<RunState> {
  const point = state.status === 'failed' ? 'on_failure' : options.afterBackup ? 'after_backup' : undefined;
  if (!point || input.loaded.config.hooks[point].length === 0) return state;
  const outcome = await runHookPoint(input.loaded, point, factsOf(input, state), { log: input.log, signal: input.signal }).catch((err: Error) => ({ failure: `hooks.${point} failed: ${err.message}`, ran: 0 }));
  if (!outcome.failure) return state;
  const warnings = [...(state.warnings ?? [])];
  recordWarning(warnings, input.log, warning(WarningCodes.HOOK_FAILED, outcome.failure));
  return { ...state, warnings, status: state.status === 'ok' ? 'warning' : state.status };
}

/**
 * A run that stops before it has a state of its own (SIGTERM, hooks.timeout, a missing engine
 * binary, the dump dir unwritable) still leaves a failed record: otherwise `status` and the
 * watchdog would go on showing the previous good run as the latest. Rethrows the error.
 */
async function recordAbort(input: JobInput, startedAt: string, err: unknown): Promise<never> {
  const reason = input.signal?.aborted ? input.signal.reason : err;
  const timedOut = (reason as Error | undefined)?.name === 'TimeoutError';
  const message = timedOut ? 'took longer than its time limit (hooks.timeout / --timeout): stopped' : (reason as Error | undefined)?.message ?? String(reason);
  const state = runState({ engine: input.engine, trigger: input.trigger, level: input.level, job: input.job, startedAt, backup: { status: 'skipped', detail: message }, problems: [message], failed: true });
  // No heartbeat (nor on_failure hook) when interrupted: the machine may be shutting down.
  const reported = input.signal?.aborted ? state : await endHooks(input, state, { afterBackup: false }).catch(() => state);
  await recordRun(input.loaded, input.log, reported, { ping: !input.signal?.aborted }).catch(() => undefined);
  throw err;
}

/** Map Bacula's %e (or a wrapper's exit status) to our outcome. */
export function parseBackupStatus(status: string | undefined): 'ok' | 'warning' | 'failed' {
  const s = (status ?? '').trim().toLowerCase();
  if (s === '' || s === '0' || s === 'ok' || s === 'success') return 'ok';
  if (s.startsWith('ok') || s.includes('warning')) return 'warning';
  return 'failed';
}

/** `hook pre-backup`: dumps for a backup that someone else (Bacula, a wrapper script) makes. */
export async function hookPreBackup(jobInput: JobInput): Promise<JobOutcome> {
  const engine = stepsOf(jobInput).engine(jobInput.engine);
  const job = await startJob(jobInput, `apiscp-backup hook pre-backup${jobInput.job?.id ? ` (job ${jobInput.job.id})` : ''}`);
  const { input } = job;
  const startedAt = new Date().toISOString();
  try {
    job.progress.phase('dumps');
    const pre = await preBackup(input, engine).catch((err: unknown) => recordAbort(input, startedAt, err));
    const { proceed } = pre;
    const state = withWarning(pre.state, job.died);
    job.progress.phase('recording');
    if (proceed) await addPin(input.loaded, { runId: state.runId!, job: input.job?.name, jobId: input.job?.id, since: state.startedAt });
    const finished = { ...state, finishedAt: new Date().toISOString(), durationMs: Date.now() - Date.parse(state.startedAt) };
    // Not final for engines that back up afterwards: post-backup records the outcome.
    const final = proceed ? { ...finished, status: 'running' as const } : await endHooks(input, finished, { afterBackup: false });
    const recorded = await recordRun(input.loaded, input.log, final, { ping: !proceed });
    return { exitCode: proceed ? ExitCode.OK : ExitCode.DUMP_FAILED, state: proceed ? { ...recorded, status: state.status } : recorded };
  } finally {
    await job.end();
  }
}

/** `hook post-backup`: record the engine's outcome, apply retention, unpin the dumps. */
export async function hookPostBackup(input: JobInput & { status?: string }): Promise<JobOutcome> {
  const { loaded, log } = input;
  const recorded0 = previousState(loaded);
  // The record is this job's pre-backup only when the job ids agree: a pre-backup that found the
  // lock busy recorded nothing there, and the record is another job's (the holder's, or older).
  const mine = input.job?.id === undefined || recorded0?.job?.id === input.job.id;
  const previous = mine ? recorded0 : undefined;
  const busy = readBusyFailure(busyFile(loaded.paths.stateDir));
  const busyMine = busy && input.job?.id !== undefined && busy.job?.id === input.job.id ? busy : undefined;
  const outcome = parseBackupStatus(input.status);
  // The job's outcome is recorded even when pins.json is unreadable; that is said as an error.
  const pinError = await removePin(loaded, input.job?.id).then(
    () => undefined,
    (err: unknown) => {
      if (!(err instanceof PinsError)) throw err;
      log.error(err.message);
      return err;
    },
  );
  const dumpsFailed = (previous?.dumps?.failed ?? 0) > 0;
  // The pre-backup's warnings (events skipped, a database missing) belong to this backup too.
  const warnings: Warning[] = [...(previous?.warnings ?? [])];
  if (outcome === 'warning') warnings.push(warning(WarningCodes.ENGINE_WARNING, `${input.engine} finished with warnings: ${input.status}`));
  const state = runState({
    runId: previous?.runId,
    engine: input.engine,
    trigger: input.trigger,
    level: input.level ?? previous?.level,
    job: input.job ?? previous?.job,
    startedAt: previous?.startedAt ?? new Date().toISOString(),
    dumps: previous?.dumps,
    backup: { status: outcome, detail: input.status },
    problems: [
      ...(busyMine ? [busyText(busyMine)] : []),
      ...(previous?.problems ?? []),
      ...(outcome === 'failed' ? [`${input.engine} backup failed: ${input.status}`] : []),
      ...(pinError ? [pinError.message] : []),
    ],
    warnings,
    failed: outcome === 'failed' || busyMine !== undefined,
    degraded: dumpsFailed,
  });
  const recorded = await recordRun(loaded, log, await endHooks(input, state, { afterBackup: true }));
  // The lock was busy: that is what failed (exit 3, like the pre-backup), not the engine.
  if (busyMine) log.error(busyText(busyMine));
  return { exitCode: busyMine ? ExitCode.BUSY : outcome === 'failed' ? ExitCode.ENGINE : pinError ? pinError.exitCode : ExitCode.OK, state: recorded };
}

/** `run`: lock → pre-backup → engine backup (gated on the dumps) → retention → report. */
export async function runJob(jobInput: JobInput): Promise<JobOutcome> {
  const engine = stepsOf(jobInput).engine(jobInput.engine);
  const job = await startJob(jobInput, `apiscp-backup ${jobInput.trigger === 'cron' ? 'nightly' : 'run'} (${jobInput.engine})`);
  const { input } = job;
  const startedAt = new Date().toISOString();
  try {
    const ctx0 = await engineContext(input);
    await engine.check(ctx0).catch((err: unknown) => recordAbort(input, startedAt, err));
    job.progress.phase('dumps');
    const { state, proceed } = await preBackup(input, engine).catch((err: unknown) => recordAbort(input, startedAt, err));
    let backup: RunState['backup'] = state.backup;
    let level: RunState['level'] = state.level;
    const problems = [...state.problems];
    const warnings = [...(state.warnings ?? []), ...(job.died ? [job.died] : [])];
    let exitCode: number = (state.dumps && state.dumps.failed > 0) || !proceed ? ExitCode.DUMP_FAILED : ExitCode.OK;
    if (proceed && engine.drivesBackup) {
      let ctx: EngineContext | undefined;
      try {
        ctx = await engineContext(input);
        const engineCtx = ctx;
        job.progress.phase('backup');
        // At the configured priority, like the dumps (priority.nice / priority.ionice).
        const result: EngineResult = await withPriority(input.loaded.config.priority, input.log, () => engine.backup(engineCtx));
        level = result.level;
        warnings.push(...result.warnings.map((w) => warning(WarningCodes.ENGINE_WARNING, w)));
        backup = { status: result.warnings.length ? 'warning' : 'ok', id: result.id, bytes: result.bytes };
      } catch (err) {
        // A bug: exit 70 with the stack in the log, and a failed record (status must not show the last good run).
        if (!(err instanceof BackupError)) return await recordAbort(input, state.startedAt, err);
        input.log.error(err.message);
        problems.push(err.message);
        backup = { status: 'failed', detail: err.message };
        exitCode = err.exitCode;
      }
      // The backup exists: a prune that fails costs repository space, not this backup.
      if (ctx && backup?.status !== 'failed' && engine.prune) {
        try {
          job.progress.phase('prune');
          await engine.prune(ctx);
        } catch (err) {
          if (!(err instanceof BackupError)) return await recordAbort(input, state.startedAt, err);
          const w = warning(WarningCodes.PRUNE_FAILED, `${engine.name}: the backup was made, but applying retention to the repository failed: ${err.message}`);
          input.log.warn(w.message);
          warnings.push(w);
        }
      }
    } else if (proceed) {
      backup = undefined; // dumps only: the other backup software picks up dumps.dir
    }
    // Interrupted during the backup or the prune: like an interruption anywhere else (exit 143,
    // a failed record, no hooks, no heartbeat), not an engine failure reported through on_failure.
    if (input.signal?.aborted) return await recordAbort(input, state.startedAt, input.signal.reason);
    job.progress.phase('recording');
    const finished = runState({ ...state, level, backup, problems, warnings, failed: backup?.status === 'failed' || !proceed });
    const recorded = await recordRun(input.loaded, input.log, await endHooks(input, finished, { afterBackup: true }), { ping: input.ping });
    return { exitCode, state: recorded };
  } finally {
    await job.end();
  }
}

/** `dump`: the dumps alone, now (also what admins of other backup software schedule). */
export async function dumpJob(jobInput: JobInput): Promise<JobOutcome> {
  const job = await startJob(jobInput, 'apiscp-backup dump');
  const { input } = job;
  try {
    const startedAt = new Date().toISOString();
    job.progress.phase('dumps');
    // A dump dir that is full or read-only, or a SIGTERM, must show in status.json too.
    const hooked = await dumpsWithHooks(input).catch((err: unknown) => recordAbort(input, startedAt, err));
    if (!hooked.result) {
      const state = runState({ engine: input.engine, trigger: 'dump', startedAt, backup: { status: 'skipped', detail: hooked.failure }, problems: [hooked.failure!], warnings: job.died ? [job.died] : [], failed: true });
      return { exitCode: ExitCode.DUMP_FAILED, state: await recordRun(input.loaded, input.log, await endHooks(input, state, { afterBackup: false })) };
    }
    const { result } = hooked;
    const problems = [...dumpProblems(result), ...(hooked.failure ? [hooked.failure] : [])];
    const warnings = [...dumpWarnings(result), ...(job.died ? [job.died] : [])];
    job.progress.phase('recording');
    const ok = result.ok && !hooked.failure;
    const state = runState({
      runId: result.runId,
      engine: input.engine,
      trigger: 'dump',
      startedAt,
      dumps: dumpsState(result),
      // A manual dump is not a backup of the files: for real engines it must not reset the watchdog.
      backup: input.engine === 'none' ? undefined : { status: 'skipped', detail: 'dumps only (apiscp-backup dump)' },
      problems,
      warnings,
      failed: !ok,
    });
    const recorded = await recordRun(input.loaded, input.log, await endHooks(input, state, { afterBackup: false }));
    return { exitCode: ok ? ExitCode.OK : ExitCode.DUMP_FAILED, state: recorded };
  } finally {
    await job.end();
  }
}
