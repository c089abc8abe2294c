import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { describe, type Command } from './command.js';
import { spawnOptions } from './lifecycle.js';
import { terminate, track } from './process-group.js';

/**
 * A child whose streams Node handles itself: it writes the stdin (with backpressure), reads the
 * stdout, and sees every byte of stderr as it comes. pipeToFile joins stages by kernel pipes,
 * which is the fast way when nothing in between changes; this is for when Node must rewrite,
 * filter or count what passes (restore acls: paths made relative, entries counted), and for a
 * tool that reports one line per skipped file, more than any stderr tail keeps.
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
  const child = spawn(command.file, [...command.args], { ...spawnOptions(command), stdio: [options.stdin ? 'pipe' : 'ignore', options.stdout ? 'pipe' : 'ignore', 'pipe'] });
  track(child);
  let gone = false;
  child.stderr!.on('data', (d: Buffer) => options.onStderr?.(d));
  // A reader that died shows as EPIPE on our side; its own exit status is what gets reported.
  child.stdin?.on('error', () => undefined);
  const exited = new Promise<FedExit>((resolve) => {
    child.once('error', (err) => ((gone = true), resolve({ exitCode: null, signal: null, spawnError: err.message })));
    child.once('close', (exitCode, signal) => ((gone = true), resolve({ exitCode, signal })));
  });
  const write = async (chunk: Buffer): Promise<void> => {
    const stdin = child.stdin;
    if (!stdin || gone || stdin.destroyed || chunk.length === 0) return;
    if (stdin.write(chunk)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => (stdin.off('drain', done), stdin.off('close', done), resolve());
      stdin.once('drain', done).once('close', done);
      void exited.then(done);
    });
  };
  const end = async (): Promise<FedExit> => {
    child.stdin?.end();
    return exited;
  };
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) terminate(child, 1000);
  };
  return { command: describe(command), stdout: child.stdout, write, end, exited, kill };
}
