import { StringDecoder } from 'node:string_decoder';
import { execa } from 'execa';
import { CommandError, tail } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { zeroIsOk, type ExitClassifier } from './exit-status.js';
import { spawnOptions, Watch, type Ended, type Limits } from './lifecycle.js';
import { terminate, track } from './process-group.js';

export interface RunOptions extends Limits {
  /** Text written to stdin (never used for secrets on argv; fine for SQL). */
  input?: string;
  /** Strings to blank out of messages (passwords that a tool might echo). */
  secrets?: readonly string[];
  /** How this tool's exit codes read (default: only 0 is ok); 'error' throws CommandError. */
  exitClass?: ExitClassifier;
  /** 'inherit' streams the output to our own (interactive use). */
  stdout?: 'pipe' | 'inherit' | 'ignore';
  stderr?: 'pipe' | 'inherit';
  /** Exit code a failure maps to (engine failures differ from dump failures). */
  failureExitCode?: ExitCode;
  /** Sees stdout as it comes (a watchdog of the tool's progress); the whole output is still returned. */
  onStdout?: (chunk: string) => void;
  /** Sees stderr as it comes (a tool's progress written there), decoded across chunk boundaries; the whole is still returned. */
  onStderr?: (chunk: string) => void;
}

/** How it ended (the one result type, Ended), with the output captured. */
export interface RunResult extends Ended {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
  /** 'warning': the tool did its work but said something is off (borg 1, restic 3). */
  readonly exitClass: 'ok' | 'warning';
}

/**
 * Run one command to completion and capture its output. Throws CommandError (command, exit
 * code, stderr tail) when options.exitClass (default: only 0 is ok) calls its exit an error.
 */
export async function run(command: Command, options: RunOptions = {}): Promise<RunResult> {
  const shown = describe(command, options.secrets);
  const started = Date.now();
  const child = execa(command.file, [...command.args], {
    ...spawnOptions(command),
    extendEnv: false,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : undefined,
    stdout: options.stdout ?? 'pipe',
    stderr: options.stderr ?? 'pipe',
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 256 * 1024 * 1024,
  });
  track(child);
  const onStdout = options.onStdout;
  if (onStdout) child.stdout?.on('data', (b: Buffer | string) => onStdout(b.toString()));
  const onStderr = options.onStderr;
  if (onStderr) {
    const utf8 = new StringDecoder('utf8');
    child.stderr?.on('data', (b: Buffer | string) => onStderr(typeof b === 'string' ? b : utf8.write(b)));
  }
  // Our Watch, not execa's timeout/cancelSignal: those signal the pid only (process-group.ts).
  const watch = new Watch(options, () => void terminate(child));
  try {
    const result = await child;
    const stdout = typeof result.stdout === 'string' ? result.stdout : '';
    const stderr = typeof result.stderr === 'string' ? result.stderr : '';
    const exitCode = result.exitCode ?? -1;
    const durationMs = Date.now() - started;
    const exitClass = result.signal || watch.timedOut ? 'error' : (options.exitClass ?? zeroIsOk)(exitCode);
    if (exitClass === 'error') {
      const why = watch.why({ signal: result.signal, exitCode: result.exitCode, startError: result.originalMessage ?? result.shortMessage });
      const stderrTail = redact(tail(stderr || (result.exitCode === undefined ? result.originalMessage ?? '' : '')), options.secrets);
      throw new CommandError({
        message: `${shown}: ${why}${stderrTail ? `: ${errorLine(stderrTail)}` : ''}`,
        command: shown,
        exitCode: result.exitCode,
        signal: result.signal,
        stderrTail,
        timedOut: watch.timedOut,
        failureExitCode: options.failureExitCode,
      });
    }
    return { command: shown, stdout, stderr, exitCode, signal: null, exitClass, durationMs, stderrTail: redact(tail(stderr), options.secrets), timedOut: false };
  } finally {
    watch.end();
  }
}
