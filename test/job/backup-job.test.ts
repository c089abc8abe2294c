/**
 * The backup job's step order and what a failing step leaves (README: "Exit codes", "none,
 * custom methods and user hooks", `hooks.*` in the config reference). The lock, the hooks (real
 * commands through /bin/sh), the run directory and status.json are real; only the engine and
 * the dumps are stand-ins (JobInput.steps), so each outcome can be driven without a database
 * server or a repository. The dumps and the engine through real servers are in
 * nothing-lost.test.ts, user-hooks.test.ts and e2e-engines.test.ts.
 */
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { openRunDirectory } from '../../lib/dumps/run-directory.js';
import type { Engine } from '../../lib/engine/types.js';
import { EngineError, InterruptedError } from '../../lib/errors.js';
import { ExitCode } from '../../lib/exit-codes.js';
import { dumpJob, runJob, type JobInput, type JobSteps } from '../../lib/job/backup-job.js';
import { acquireLock, LockBusyError } from '../../lib/lock/lock.js';
import { memoryLogger } from '../../lib/log.js';
import type { ManifestEntry } from '../../lib/model/manifest.js';
import { readRunState } from '../../lib/report/state-file.js';

const SH = '/bin/sh';

interface Setup {
  readonly loaded: LoadedConfig;
  /** The steps in the order they happened, hooks included. */
  trace(): string[];
  /** For the stand-ins: note a step, and whether the job's lock was held during it. */
  note(step: string): Promise<void>;
}

/** A fresh root with these hooks; a hook command `name` appends its name to the trace. */
function setup(hooks: Partial<Record<'before_dumps' | 'after_dumps' | 'after_backup' | 'on_failure', string[]>> = {}, failing: readonly string[] = [], extra: Record<string, unknown> = {}): Setup {
  const root = mkdtempSync(join(tmpdir(), 'backup-job-'));
  const traceFile = join(root, 'trace');
  writeFileSync(traceFile, '');
  // Each hook also says whether this run's state was already recorded when it ran.
  const hook = (name: string): string[] => [SH, '-c', `grep -qs '"runId"' "$2" && s=recorded || s=unrecorded; echo "$0 ($s)" >> "$1"; exit ${failing.includes(name) ? 3 : 0}`, name, traceFile];
  const file = join(root, 'config.yaml');
  const config = {
    engine: 'none',
    paths: { root },
    panel: { enabled: false },
    databases: { mysql: { enabled: false }, postgresql: { enabled: false } },
    hooks: Object.fromEntries(Object.entries(hooks).map(([point, names]) => [point, names!.map(hook)])),
    ...extra,
  };
  writeFileSync(file, JSON.stringify(config));
  const loaded = loadConfig({ file });
  // The hooks' $2: the status file (unknown until the config is loaded).
  const withStatus = { ...config, hooks: Object.fromEntries(Object.entries(config.hooks).map(([p, cmds]) => [p, (cmds as string[][]).map((c) => [...c, loaded.paths.statusFile])])) };
  writeFileSync(file, JSON.stringify(withStatus));
  const final = loadConfig({ file });
  return {
    loaded: final,
    trace: () => readFileSync(traceFile, 'utf8').split('\n').filter(Boolean),
    note: async (step) => appendFileSync(traceFile, `${step}${(await lockHeld(final)) ? '' : ' (NOT LOCKED)'}\n`),
  };
}

async function lockHeld(loaded: LoadedConfig): Promise<boolean> {
  try {
    const lock = await acquireLock(loaded.paths.lockPath, { waitMs: 0, command: 'probe' });
    await lock.release();
    return false;
  } catch (err) {
    if (err instanceof LockBusyError) return true;
    throw err;
  }
}

function entry(database: string, status: 'ok' | 'failed'): ManifestEntry {
  return { kind: 'mysql', object: 'database', database, site: 'site1', format: 'sql', compression: 'zstd', startedAt: new Date().toISOString(), durationMs: 1, status, ...(status === 'failed' ? { error: { message: `${database}: dump failed` } } : {}) };
}

/** Dumps into a real run directory with these outcomes. */
function dumps(s: Setup, outcomes: readonly ('ok' | 'failed')[]): JobSteps['dumps'] {
  return async (input) => {
    await s.note('dumps');
    const dir = openRunDirectory(input.loaded.paths.dumpsDir, { spaceMargin: 1 });
    outcomes.forEach((o, i) => dir.add(entry(`db${i}`, o)));
    return dir.complete({ method: 'native' });
  };
}

/** An engine that drives its backup; `fail` makes that step throw what a real engine throws. */
function engine(s: Setup, fail: { backup?: Error; prune?: Error } = {}): Engine {
  return {
    name: 'restic',
    keepsAcls: true,
    drivesBackup: true,
    check: async () => s.note('engine check'),
    backup: async () => {
      await s.note('engine backup');
      if (fail.backup) throw fail.backup;
      return { level: 'Snapshot', durationMs: 1, warnings: [], id: 'snap1' };
    },
    prune: async () => {
      await s.note('prune');
      if (fail.prune) throw fail.prune;
    },
  };
}

function job(s: Setup, steps: Partial<JobSteps>, over: Partial<JobInput> = {}): JobInput {
  return { loaded: s.loaded, log: memoryLogger(), interactive: false, engine: 'restic', trigger: 'run', steps, ...over };
}

const ALL_HOOKS = { before_dumps: ['before_dumps'], after_dumps: ['after_dumps'], after_backup: ['after_backup'], on_failure: ['on_failure'] };

describe('backup job (run): step order', () => {
  it('lock → before_dumps → dumps → after_dumps → engine backup → prune → after_backup → record → unlock', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['ok', 'ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.OK);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)', 'engine backup', 'prune', 'after_backup (unrecorded)']);
    // Recorded after the hooks, and the lock is free again.
    const state = readRunState(s.loaded.paths.statusFile)!;
    expect(state).toMatchObject({ status: 'ok', runId: outcome.state.runId, backup: { status: 'ok', id: 'snap1' }, dumps: { ok: 2, failed: 0 } });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('a failed dump: no after_dumps, no backup, no prune; on_failure runs; exit 1, a failed record, lock released', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['ok', 'failed']) }));
    expect(outcome.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'on_failure (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed', backup: { status: 'skipped' }, dumps: { ok: 1, failed: 1 } });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('on_dump_failure: warn: the backup is made anyway and run still exits 1', async () => {
    const s = setup(ALL_HOOKS, [], { on_dump_failure: 'warn' });
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['failed']) }));
    expect(outcome.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(s.trace()).toContain('engine backup');
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ backup: { status: 'ok' }, dumps: { failed: 1 } });
  });

  it('an engine failure: no prune, on_failure instead of after_backup, exit 5 (the engine), lock released', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await runJob(job(s, { engine: () => engine(s, { backup: new EngineError('restic backup: exited with 1: repository locked', 'restic') }), dumps: dumps(s, ['ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.ENGINE);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)', 'engine backup', 'on_failure (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed', backup: { status: 'failed', detail: 'restic backup: exited with 1: repository locked' } });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('a failed prune is a warning: the backup exists, exit 0, after_backup runs', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await runJob(job(s, { engine: () => engine(s, { prune: new EngineError('restic forget: exited with 1', 'restic') }), dumps: dumps(s, ['ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.OK);
    expect(s.trace().slice(-2)).toEqual(['prune', 'after_backup (unrecorded)']);
    const state = readRunState(s.loaded.paths.statusFile)!;
    expect(state.status).toBe('warning');
    expect(state.warnings?.map((w) => w.code)).toEqual(['prune-failed']);
  });

  it('before_dumps fails: no dumps, no backup; on_failure; exit 1', async () => {
    const s = setup(ALL_HOOKS, ['before_dumps']);
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'on_failure (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed', problems: [expect.stringMatching(/^hooks\.before_dumps failed: /)] });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('after_dumps fails: the dumps are kept, no backup; on_failure; exit 1', async () => {
    const s = setup(ALL_HOOKS, ['after_dumps']);
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)', 'on_failure (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed', dumps: { ok: 1 }, backup: { status: 'skipped' } });
  });

  it('after_backup fails: a hook-failed warning, the backup stands, exit 0', async () => {
    const s = setup(ALL_HOOKS, ['after_backup']);
    const outcome = await runJob(job(s, { engine: () => engine(s), dumps: dumps(s, ['ok']) }));
    expect(outcome.exitCode).toBe(ExitCode.OK);
    const state = readRunState(s.loaded.paths.statusFile)!;
    expect([state.status, state.backup?.status, state.warnings?.map((w) => w.code)]).toEqual(['warning', 'ok', ['hook-failed']]);
  });

  it('interrupted during the dumps: exit 143, nothing after, no hook, a failed record, the unfinished run gone, lock released', async () => {
    const s = setup(ALL_HOOKS);
    const controller = new AbortController();
    const interrupted: JobSteps['dumps'] = async (input) => {
      await s.note('dumps');
      const dir = openRunDirectory(input.loaded.paths.dumpsDir, { spaceMargin: 1 });
      controller.abort(new InterruptedError('SIGTERM'));
      dir.abandon(); // what dumpPlan does when its signal fires
      throw new InterruptedError('SIGTERM');
    };
    const err = await runJob(job(s, { engine: () => engine(s), dumps: interrupted }, { signal: controller.signal })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    expect((err as InterruptedError).exitCode).toBe(143);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed', problems: ['interrupted by SIGTERM'] });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('interrupted during the engine backup: the same as anywhere else (143, no prune, no on_failure), not an engine failure', async () => {
    const s = setup(ALL_HOOKS);
    const controller = new AbortController();
    const e = engine(s);
    const killed: Engine = {
      ...e,
      backup: async () => {
        await s.note('engine backup');
        controller.abort(new InterruptedError('SIGTERM'));
        // What run() reports for a child killed by our SIGTERM handler.
        throw new EngineError('restic backup: killed by SIGTERM', 'restic');
      },
    };
    const err = await runJob(job(s, { engine: () => killed, dumps: dumps(s, ['ok']) }, { signal: controller.signal })).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)', 'engine backup']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed' });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('engine none: after_backup runs right after the dumps (there is no backup of ours)', async () => {
    const s = setup(ALL_HOOKS);
    const none: Engine = { ...engine(s), name: 'none', drivesBackup: false };
    const outcome = await runJob(job(s, { engine: () => none, dumps: dumps(s, ['ok']) }, { engine: 'none' }));
    expect(outcome.exitCode).toBe(ExitCode.OK);
    expect(s.trace()).toEqual(['engine check', 'before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)', 'after_backup (unrecorded)']);
  });
});

describe('dump job (dump): step order', () => {
  it('lock → before_dumps → dumps → after_dumps → record; no after_backup (no backup was made)', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await dumpJob(job(s, { dumps: dumps(s, ['ok']) }, { trigger: 'dump', engine: 'none' }));
    expect(outcome.exitCode).toBe(ExitCode.OK);
    expect(s.trace()).toEqual(['before_dumps (unrecorded)', 'dumps', 'after_dumps (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'ok', trigger: 'dump' });
    expect(await lockHeld(s.loaded)).toBe(false);
  });

  it('a failed dump: exit 1, on_failure, a failed record', async () => {
    const s = setup(ALL_HOOKS);
    const outcome = await dumpJob(job(s, { dumps: dumps(s, ['failed']) }, { trigger: 'dump', engine: 'none' }));
    expect(outcome.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(s.trace()).toEqual(['before_dumps (unrecorded)', 'dumps', 'on_failure (unrecorded)']);
    expect(readRunState(s.loaded.paths.statusFile)).toMatchObject({ status: 'failed' });
  });
});
