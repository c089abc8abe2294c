import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { CommandError, tail } from '../errors.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { spawnOptions, Watch, type Ended, type Limits } from './lifecycle.js';
import { terminate, track } from './process-group.js';

/**
 * The long-lived primitive: a child whose streams the caller drives, for what run() (all input at
 * once, wait for the exit) cannot express: the parallel loader writing one dump into several
 * clients with barriers, a client kept open across requests (session.ts), a throwaway server that
 * outlives the call, a tool Node feeds chunk by chunk (write/endInput). It is also where
 * pipeToFile() starts its stages and a spawner its bash workers: the one place a process is
 * spawned outside execa. Its life is lifecycle.ts's: its own process group, the time limit and
 * abort of `Limits` terminate() that group, and `ended` settles with the one result, Ended.
 */
export interface ChildOptions extends Limits {
  /** 'pipe': written by the caller (or write/endInput); a stream or descriptor: another stage's output, a file. */
  readonly stdin?: 'pipe' | 'ignore' | Readable | number;
  /** A socket: the child writes into it (reused-reader.ts); a descriptor: a file; child.stdout is then null. */
  readonly stdout?: 'pipe' | 'ignore' | Socket | number;
  /** 'pipe' (default): kept for messages (the tail) and seen by onStderr. */
  readonly stderr?: 'pipe' | 'ignore';
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

export interface StartedChild {
  /** The command line as messages show it (secrets redacted). */
  readonly shown: string;
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** Settles once, when the process has ended and its streams are closed; never rejects. */
  readonly ended: Promise<Ended>;
  readonly running: boolean;
  /**
   * The CommandError for an end that is a failure: `<doing>: <why>: <the stderr line that says
   * what went wrong>`. `why` defaults to the words every CommandError uses (exited with N,
   * killed by SIG, timed out after, could not start).
   */
  failure(end: Ended, doing?: string, why?: string): CommandError;
  /** terminate() its whole process group (TERM, KILL after `graceMs`); settles once it has exited. */
  terminate(graceMs?: number): Promise<void>;
  /** One signal to the process itself (not its group): a server's own clean shutdown. */
  send(signal: NodeJS.Signals): boolean;
  /**
   * With `stdin: 'pipe'`: resolves once the pipe took the bytes (backpressure), or at once when
   * the child is gone (its end says why).
   */
  write(chunk: Buffer): Promise<void>;
  /** Close stdin (end of input) and wait for the end. */
  endInput(): Promise<Ended>;
}

const STDERR_KEEP = 8192;

export function startChild(command: Command, options: ChildOptions = {}): StartedChild {
  const shown = describe(command, options.secrets);
  const daemon = options.daemon === true;
  const started = Date.now();
  const stdio: StdioOptions = daemon ? 'ignore' : [(options.stdin ?? 'ignore') as never, (options.stdout ?? 'pipe') as never, options.stderr ?? 'pipe'];
  const child: ChildProcess = spawn(command.file, [...command.args], { ...spawnOptions(command), stdio });
  if (daemon) child.unref();
  else track(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    options.onStderr?.(d);
    stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
  });
  const stdin = child.stdin;
  // A reader that died shows as EPIPE on our side; its own exit status is what gets reported.
  stdin?.on('error', () => undefined);
  const watch = new Watch(options, () => void terminate(child));
  let gone = false;
  const ended = new Promise<Ended>((resolve) => {
    const end = (exitCode: number | null, signal: NodeJS.Signals | null, startError?: string): void => {
      gone = true;
      resolve({
        command: shown,
        exitCode,
        signal,
        ...(startError !== undefined ? { startError } : {}),
        stderrTail: redact(tail(startError ?? stderr), options.secrets),
        durationMs: Date.now() - started,
        timedOut: watch.timedOut,
      });
    };
    child.once('error', (err) => end(null, null, err.message));
    child.once('close', (exitCode, signal) => end(exitCode, signal));
  }).finally(() => watch.end());
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  const write = async (chunk: Buffer): Promise<void> => {
    if (!stdin || gone || stdin.destroyed || chunk.length === 0) return;
    if (stdin.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => (stdin.off('drain', done), stdin.off('close', done), resolve());
      stdin.once('drain', done).once('close', done);
      void ended.then(done);
    });
  };
  return {
    shown,
    pid: child.pid,
    stdin,
    stdout: child.stdout,
    ended,
    get running() {
      return running();
    },
    failure(end, doing, why) {
      const line = errorLine(end.stderrTail);
      return new CommandError({
        message: `${doing ?? shown}: ${why ?? watch.why(end)}${line ? `: ${line}` : ''}`,
        command: shown,
        exitCode: end.exitCode ?? undefined,
        signal: end.signal ?? undefined,
        stderrTail: end.stderrTail,
        timedOut: end.timedOut,
      });
    },
    terminate: (graceMs = 5000) => terminate(child, graceMs),
    send(signal) {
      if (!running()) return false;
      try {
        return child.kill(signal);
      } catch {
        return false;
      }
    },
    write,
    endInput: async () => {
      stdin?.end();
      return ended;
    },
  };
}
