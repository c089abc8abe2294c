import { ExitCode } from './exit-codes.js';

/**
 * Errors are values with context. Every error we raise on purpose is a BackupError: it carries
 * the exit code the CLI should end with and a one-line summary suitable for a cron mail.
 */
export class BackupError extends Error {
  readonly exitCode: ExitCode;
  readonly context: Record<string, unknown>;
  constructor(message: string, exitCode: ExitCode, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.context = context;
  }
}

/** What is known about a subprocess that ended badly; every field named at the call site. */
export interface CommandFailure {
  readonly message: string;
  /** The command line as shown (secrets redacted). */
  readonly command: string;
  /** The tool's own exit code (undefined: killed, timed out or never started). */
  readonly exitCode?: number;
  readonly signal?: string;
  readonly stderrTail?: string;
  readonly timedOut?: boolean;
  /** The exit code this failure gives our own process (engine and panel failures differ from dumps). */
  readonly failureExitCode?: ExitCode;
}

/** A subprocess ended badly: non-zero exit, signal, timeout or spawn failure. */
export class CommandError extends BackupError {
  readonly command: string;
  readonly exitCodeOfCommand: number | undefined;
  readonly signal: string | undefined;
  readonly stderrTail: string;
  readonly timedOut: boolean;
  constructor(f: CommandFailure) {
    const stderrTail = f.stderrTail ?? '';
    const timedOut = f.timedOut ?? false;
    super(f.message, f.failureExitCode ?? ExitCode.DUMP_FAILED, { command: f.command, exitCode: f.exitCode, signal: f.signal, stderrTail, timedOut });
    this.command = f.command;
    this.exitCodeOfCommand = f.exitCode;
    this.signal = f.signal;
    this.stderrTail = stderrTail;
    this.timedOut = timedOut;
  }
}

export class ConfigError extends BackupError {
  constructor(
    message: string,
    readonly file: string | undefined,
    readonly key?: string,
    readonly line?: number,
  ) {
    super(message, ExitCode.USAGE, { file, key, line });
  }
}

export class UsageError extends BackupError {
  constructor(message: string) {
    super(message, ExitCode.USAGE);
  }
}

/**
 * The dump directory cannot be written (read-only, full, missing permissions): nothing of this
 * run is kept. A dump failure (exit 1) with a message that says where, never exit 70.
 */
export class DumpStorageError extends BackupError {
  constructor(
    readonly runId: string,
    message: string,
    dir: string,
  ) {
    super(message, ExitCode.DUMP_FAILED, { dir, runId });
  }
}

export class PanelError extends BackupError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(message, ExitCode.PANEL, context);
  }
}

export class EngineError extends BackupError {
  constructor(message: string, readonly engine: string, context: Record<string, unknown> = {}) {
    super(message, ExitCode.ENGINE, { engine, ...context });
  }
}

/** A restore refused to start or failed; the message says what was and was not put back. */
export class RestoreError extends BackupError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, ExitCode.RESTORE_FAILED, context, options);
  }
}

export class MissingDependencyError extends BackupError {
  constructor(readonly binary: string, readonly debianPackage?: string, readonly rhelPackage?: string) {
    const hints = [
      debianPackage && `apt-get install ${debianPackage}`,
      rhelPackage && `dnf install ${rhelPackage}`,
    ].filter(Boolean);
    super(`required program '${binary}' was not found${hints.length ? ` (install it: ${hints.join(' / ')})` : ''}`, ExitCode.MISSING_DEPENDENCY, {
      binary,
    });
  }
}

export class InterruptedError extends BackupError {
  constructor(signal: string) {
    super(`interrupted by ${signal}`, ExitCode.INTERRUPTED, { signal });
  }
}

/** Keep the end of a stream's text: the last lines are where tools say what went wrong. */
export function tail(text: string, maxChars = 2000): string {
  const trimmed = text.trimEnd();
  return trimmed.length <= maxChars ? trimmed : '…' + trimmed.slice(trimmed.length - maxChars);
}
