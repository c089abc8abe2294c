import { loadConfig, type LoadedConfig } from '../config/load.js';
import { BackupError, InterruptedError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { createLogger, SHOWN, type Logger } from '../log.js';
import { runLastResort } from '../last-resort.js';
import { killAll, terminateAll, waitForChildren } from '../proc/process-group.js';

/** Options every command accepts (commander passes them down). */
export interface GlobalOptions {
  config?: string;
  root?: string;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

export interface CommandContext {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly options: GlobalOptions;
  /** On a terminal we show progress and info lines; under cron we say nothing unless it failed. */
  readonly interactive: boolean;
  /** Text for stdout (results the user asked for: status, config print). */
  out(text: string): void;
}

/**
 * Load the config, open the log, turn SIGTERM/SIGINT (a cancelled Bacula job, Ctrl-C) into an
 * abort that kills every child's process tree, and map errors to exit codes.
 */
export async function withContext(options: GlobalOptions, body: (ctx: CommandContext) => Promise<number>, settings: { logFile?: boolean } = {}): Promise<never> {
  const controller = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    // A second signal (an impatient admin, a Bacula cancel after a TERM): out now, lock released.
    if (signalled) return lastResortExit(sig, 'a second signal');
    signalled = sig;
    controller.abort(new InterruptedError(sig));
    terminateAll(CHILD_GRACE_MS);
    // The orderly path removes partial files and releases the lock within a second or two; a
    // step that does not settle after the abort must not keep the lock for the rest of the night.
    setTimeout(() => lastResortExit(sig, `the job still unwinding ${UNWIND_DEADLINE_MS / 1000} s after it`), UNWIND_DEADLINE_MS).unref();
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.removeAllListeners(sig); // the start-up's (lib/cli/bundled.ts): nothing was done yet
    process.on(sig, onSignal);
  }

  const interactive = Boolean(process.stderr.isTTY) && !options.quiet;
  let code: number;
  let log: Logger | undefined;
  try {
    // A configuration error is raised when a command first reads ctx.loaded, not here: `config
    // init` must be able to write the file --config/$APISCP_BACKUP_CONFIG names before it exists,
    // and replace (--force) one that no longer parses. Every other command reads ctx.loaded at
    // once, so for them nothing changes: same ConfigError, same exit 2.
    let loaded: LoadedConfig | undefined;
    let loadError: unknown;
    try {
      loaded = loadConfig({ file: options.config, root: options.root });
    } catch (err) {
      loadError = err;
    }
    log = await createLogger({
      // Only commands that act on the server write the log (config/status/demo leave no trace);
      // without a usable config there is no log file to write either.
      file: settings.logFile === false ? undefined : loaded?.paths.logFile,
      level: options.verbose ? 'debug' : (loaded?.config.logging.level ?? 'info'),
      // On a terminal the commands print their own results; the log adds only problems (its info
      // lines said the same things a second time), and -v everything.
      console: options.verbose ? 'verbose' : interactive ? 'problems' : 'quiet',
    });
    code = await body({
      get loaded(): LoadedConfig {
        if (!loaded) throw loadError;
        return loaded;
      },
      log,
      signal: controller.signal,
      options,
      interactive,
      out: (text) => process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
    });
  } catch (err) {
    code = reportError(err, log, signalled, loadedFile(options, settings));
  }
  if (signalled) {
    await waitForChildren(5000);
    code = ExitCode.INTERRUPTED;
  }
  await log?.flush();
  process.exit(code);
}

/** Children get this long after SIGTERM before SIGKILL. */
const CHILD_GRACE_MS = 3000;
/** After the first signal the process exits within this long, however its steps unwind. */
const UNWIND_DEADLINE_MS = 8000;

/**
 * Exit at once: every child's process group killed, the lock, secret files and the unfinished run
 * directory removed (lib/last-resort.ts), one line on stderr saying why.
 */
function lastResortExit(sig: NodeJS.Signals, why: string): never {
  killAll();
  runLastResort();
  process.stderr.write(`apiscp-backup: interrupted by ${sig}; exiting at once (${why}): child processes killed, lock released, partial files removed\n`);
  process.exit(ExitCode.INTERRUPTED);
}

export function reportError(err: unknown, log: Logger | undefined, signalled?: string, logFile?: string): number {
  if (signalled) {
    process.stderr.write(`apiscp-backup: interrupted by ${signalled}; child processes stopped, partial files removed\n`);
    log?.error(`interrupted by ${signalled}`);
    return ExitCode.INTERRUPTED;
  }
  if (err instanceof BackupError) {
    process.stderr.write(`apiscp-backup: ${err.message}\n`);
    // Said on stderr just above: the log file gets it, the terminal not a second time.
    log?.error(err.message, { ...err.context, [SHOWN]: true });
    return err.exitCode;
  }
  // Not one of our errors: a bug. Exit 70 (never "dump failed"), the stack in the log; stderr
  // (a cron mail) gets one line, plus the stack only when there is no log to hold it.
  const e = err as Error;
  const stack = e?.stack ?? String(err);
  log?.error('internal error', { error: stack });
  const where = logFile && log ? `the stack is in ${logFile}` : stack;
  process.stderr.write(`apiscp-backup: internal error (a bug: please report it with the log): ${e?.message ?? String(err)}; ${where}\n`);
  return ExitCode.INTERNAL;
}

/** The log file of this command, when it writes one (for pointing at the stack of an internal error). */
function loadedFile(options: GlobalOptions, settings: { logFile?: boolean }): string | undefined {
  if (settings.logFile === false) return undefined;
  try {
    return loadConfig({ file: options.config, root: options.root }).paths.logFile;
  } catch {
    return undefined;
  }
}
