import type { LoadedConfig } from '../config/load.js';
import { durationMs } from '../config/schema.js';
import { CommandError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Logger } from '../log.js';
import { cmd, describe } from '../proc/command.js';
import { run } from '../proc/run.js';
import { expandBackupPaths, type BackupPaths } from '../plan/paths.js';

/**
 * The admin's own commands at the points borgmatic users rely on. Each point is a list of argv
 * arrays run one after the other, without a shell, through our runner, each limited by
 * hooks.command_timeout, with the run's facts in the environment (APISCP_BACKUP_*).
 * Before the backup (before_dumps, after_dumps) a failure fails the run: no backup without what
 * the admin asked for. After it (after_backup, on_failure) a failure is a warning.
 */
export type HookPoint = 'before_dumps' | 'after_dumps' | 'after_backup' | 'on_failure';

export const FAILS_THE_RUN: ReadonlySet<HookPoint> = new Set(['before_dumps', 'after_dumps']);

/** What a hook learns about the job, as APISCP_BACKUP_<NAME> variables. */
export interface HookFacts {
  readonly engine: string;
  readonly trigger: string;
  /** The run directory the job's dumps went into (once there is one): its name and path. */
  readonly runId?: string;
  readonly runDir?: string;
  readonly level?: string;
  readonly job?: string;
  readonly jobId?: string;
  /** ok | warning | failed: the job so far (after_backup, on_failure). */
  readonly status?: string;
  /** The first problem, for on_failure. */
  readonly error?: string;
}

export function hookEnv(loaded: LoadedConfig, point: HookPoint, facts: HookFacts, paths: BackupPaths): Record<string, string> {
  const env: Record<string, string | undefined> = {
    APISCP_BACKUP_HOOK: point,
    APISCP_BACKUP_ENGINE: facts.engine,
    APISCP_BACKUP_TRIGGER: facts.trigger,
    APISCP_BACKUP_CONFIG: loaded.file,
    APISCP_BACKUP_DUMPS_DIR: loaded.paths.dumpsDir,
    APISCP_BACKUP_RUN_ID: facts.runId,
    APISCP_BACKUP_RUN_DIR: facts.runDir,
    APISCP_BACKUP_LEVEL: facts.level,
    APISCP_BACKUP_JOB: facts.job,
    APISCP_BACKUP_JOB_ID: facts.jobId,
    APISCP_BACKUP_STATUS: facts.status,
    APISCP_BACKUP_ERROR: facts.error,
    // What a "dumps only" tool or custom method must copy (ACLs and xattrs included), expanded now
    // like `apiscp-backup paths` (siteN only), one per line; the excludes the same way.
    APISCP_BACKUP_SOURCES: paths.sources.join('\n'),
    APISCP_BACKUP_EXCLUDES: paths.excludes.join('\n'),
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

export interface HookPointOutcome {
  /** Set when a command failed (the first one; the rest of the point did not run). */
  readonly failure?: string;
  readonly ran: number;
}

/** Run one point's commands in order; stop at the first failure and say which command it was. */
export async function runHookPoint(
  loaded: LoadedConfig,
  point: HookPoint,
  facts: HookFacts,
  options: { log: Logger; signal?: AbortSignal },
): Promise<HookPointOutcome> {
  const commands = loaded.config.hooks[point];
  if (commands.length === 0) return { ran: 0 };
  const env = hookEnv(loaded, point, facts, await expandBackupPaths(loaded.paths));
  let ran = 0;
  for (const argv of commands) {
    const command = cmd(argv[0]!, argv.slice(1), { env });
    options.log.info(`hooks.${point}: ${describe(command)}`);
    try {
      await run(command, { timeoutMs: durationMs(loaded.config.hooks.command_timeout), signal: options.signal, failureExitCode: ExitCode.DUMP_FAILED });
      ran++;
    } catch (err) {
      if (!(err instanceof CommandError) || options.signal?.aborted) throw err;
      const failure = `hooks.${point} failed: ${err.timedOut ? `${describe(command)} took longer than hooks.command_timeout ${loaded.config.hooks.command_timeout}` : err.message}`;
      options.log.error(failure);
      return { failure, ran };
    }
  }
  return { ran };
}
