import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { CommandError, tail } from '../errors.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { spawnOptions, Watch, type Limits } from './lifecycle.js';
import { terminate, track } from './process-group.js';

/**
 * A child whose streams the caller drives itself, for what run() (all input at once, wait for
 * the exit) and pipeToFile() (a | b > file) cannot express: the parallel loader writing one
 * dump into several clients with barriers, a throwaway server that outlives the call. It gets
 * the same life as theirs (lifecycle.ts): its own process group, the time limit and abort of
 * `Limits` killing that group, and a CommandError from named fields that says how it ended.
 */
export interface ChildOptions extends Limits {
  readonly stdin?: 'pipe' | 'ignore';
  /** A socket: the child writes into it (reused-reader.ts), child.stdout is then null. */
  readonly stdout?: 'pipe' | 'ignore' | Socket;
  readonly secrets?: readonly string[];
  /**
   * Sees every byte of stderr as it comes (a tool that reports one line per skipped file, more
   * than the kept tail holds); the tail for messages is kept as well.
   */
  readonly onStderr?: (chunk: Buffer) => void;
  /**
   * A daemon (a sandbox server): every stream ignored, not among the children a SIGTERM of ours
   * stops (it has its own stop), and it does not keep Node running.
   */
  readonly daemon?: boolean;
}

/** How it ended: an exit code, a signal, or a start that failed (ENOENT, EACCES). */
export interface ChildEnd {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly startError?: string;
}

export interface StartedChild {
  /** The command line as messages show it (secrets redacted). */
  readonly shown: string;
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** Settles once, when the process has ended and its streams are closed; never rejects. */
  readonly ended: Promise<ChildEnd>;
  readonly running: boolean;
  /**
   * The CommandError for an end that is a failure: `<doing>: <why>: <the stderr line that says
   * what went wrong>`. `why` defaults to the words every CommandError uses (exited with N,
   * killed by SIG, timed out after, could not start).
   */
  failure(end: ChildEnd, doing?: string, why?: string): CommandError;
  /** TERM the whole process group, KILL after `graceMs` whatever is left; no-op once ended. */
  stop(graceMs?: number): void;
  /** One signal to the process itself (not its group): a server's own clean shutdown. */
  send(signal: NodeJS.Signals): boolean;
}

const STDERR_KEEP = 8192;

export function startChild(command: Command, options: ChildOptions = {}): StartedChild {
  const shown = describe(command, options.secrets);
  const daemon = options.daemon === true;
  const child: ChildProcess = spawn(command.file, [...command.args], {
    ...spawnOptions(command),
    stdio: daemon ? 'ignore' : [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
  });
  if (daemon) child.unref();
  else track(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    options.onStderr?.(d);
    stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
  });
  const watch = new Watch(options, () => terminate(child));
  const ended = new Promise<ChildEnd>((resolve) => {
    child.once('error', (err) => resolve({ exitCode: null, signal: null, startError: err.message }));
    child.once('close', (exitCode, signal) => resolve({ exitCode, signal }));
  }).finally(() => watch.end());
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  return {
    shown,
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout,
    ended,
    get running() {
      return running();
    },
    failure(end, doing, why) {
      const stderrTail = redact(tail(end.startError ?? stderr), options.secrets);
      const line = errorLine(stderrTail);
      return new CommandError({
        message: `${doing ?? shown}: ${why ?? watch.why(end)}${line ? `: ${line}` : ''}`,
        command: shown,
        exitCode: end.exitCode ?? undefined,
        signal: end.signal ?? undefined,
        stderrTail,
        timedOut: watch.timedOut,
      });
    },
    stop(graceMs = 5000) {
      if (running()) terminate(child, graceMs);
    },
    send(signal) {
      if (!running()) return false;
      try {
        return child.kill(signal);
      } catch {
        return false;
      }
    },
  };
}
