import { randomBytes } from 'node:crypto';
import type { CommandError } from '../errors.js';
import { startChild } from './child.js';
import type { Command } from './command.js';
import type { Ended } from './lifecycle.js';

/**
 * A client kept open across several requests (psql holding one transaction). run() cannot do
 * this: it writes all input at once and waits for the exit. Each request is text written to
 * stdin followed by `marker(token)`, a statement that makes the client print the token; the
 * reply is everything printed before the token. The client exiting early is a CommandError with
 * its stderr, like run()'s. A use of the long-lived primitive (child.ts).
 */
export interface ClientSession {
  request(text: string, signal?: AbortSignal): Promise<string>;
  /** Close stdin (the client ends, its transaction with it) and wait for the exit. */
  close(): Promise<void>;
}

export function openClientSession(command: Command, marker: (token: string) => string, options: { secrets?: readonly string[] } = {}): ClientSession {
  const child = startChild(command, { stdin: 'pipe', stdout: 'pipe', secrets: options.secrets });
  let stdout = '';
  let exited: Ended | undefined;
  let waiter: (() => void) | undefined;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => ((stdout += d), waiter?.()));
  const gone = child.ended.then((end) => void ((exited = end), waiter?.()));
  const failure = (): CommandError => child.failure(exited!);
  let queue: Promise<unknown> = Promise.resolve();
  const request = (text: string, signal?: AbortSignal): Promise<string> => {
    const next = queue.then(
      () =>
        new Promise<string>((resolve, reject) => {
          const token = `--asb-${randomBytes(6).toString('hex')}--`;
          const onAbort = (): void => (void child.terminate(), reject(signal?.reason ?? new Error('aborted')));
          signal?.addEventListener('abort', onAbort, { once: true });
          waiter = () => {
            const at = stdout.indexOf(token + '\n');
            if (at >= 0) {
              const reply = stdout.slice(0, at);
              stdout = stdout.slice(at + token.length + 1);
              waiter = undefined;
              signal?.removeEventListener('abort', onAbort);
              resolve(reply);
            } else if (exited) {
              waiter = undefined;
              signal?.removeEventListener('abort', onAbort);
              reject(failure());
            }
          };
          if (exited) return waiter();
          child.stdin!.write(`${text}\n${marker(token)}\n`);
        }),
    );
    queue = next.catch(() => undefined);
    return next;
  };
  const close = async (): Promise<void> => {
    child.stdin!.end();
    const timer = setTimeout(() => void child.terminate(), 30_000);
    await gone;
    clearTimeout(timer);
  };
  return { request, close };
}
