import type { Readable } from 'node:stream';
import type { Command } from './command.js';
import { startChild } from './child.js';

/**
 * A child whose stdin Node writes chunk by chunk (with backpressure) and whose stdout and stderr
 * it reads: startChild (child.ts, the same lifecycle) with the writing done for the caller.
 * pipeToFile joins stages by kernel pipes, which is the fast way when nothing in between changes;
 * this is for when Node must rewrite, filter or count what passes (restore acls: paths made
 * relative, entries counted), and for a tool that reports one line per skipped file.
 */
export interface FedChild {
  /** The command line as shown in messages. */
  readonly command: string;
  /** Its stdout, when asked for (`stdout: true`), else null. */
  readonly stdout: Readable | null;
  /** Resolves once the pipe took the bytes, or at once when the child is gone (its exit says why). */
  write(chunk: Buffer): Promise<void>;
  /** Close stdin (end of input) and wait for the exit. */
  end(): Promise<FedExit>;
  readonly exited: Promise<FedExit>;
  /** Kill its process group (a sibling failed): the exit still resolves. */
  kill(): void;
}

export interface FedExit {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why it could not start (ENOENT, a missing cwd). */
  readonly spawnError?: string;
}

export function spawnFed(command: Command, options: { stdin?: boolean; stdout?: boolean; onStderr?: (chunk: Buffer) => void } = {}): FedChild {
  const child = startChild(command, { stdin: options.stdin ? 'pipe' : 'ignore', stdout: options.stdout ? 'pipe' : 'ignore', onStderr: options.onStderr });
  let gone = false;
  const exited: Promise<FedExit> = child.ended.then((end) => {
    gone = true;
    return { exitCode: end.exitCode, signal: end.signal, ...(end.startError !== undefined ? { spawnError: end.startError } : {}) };
  });
  const stdin = child.stdin;
  // A reader that died shows as EPIPE on our side; its own exit status is what gets reported.
  stdin?.on('error', () => undefined);
  const write = async (chunk: Buffer): Promise<void> => {
    if (!stdin || gone || stdin.destroyed || chunk.length === 0) return;
    if (stdin.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => (stdin.off('drain', done), stdin.off('close', done), resolve());
      stdin.once('drain', done).once('close', done);
      void exited.then(done);
    });
  };
  const end = async (): Promise<FedExit> => {
    stdin?.end();
    return exited;
  };
  return { command: child.shown, stdout: child.stdout, write, end, exited, kill: () => child.stop(1000) };
}
