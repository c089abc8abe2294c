import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CommandError, tail } from '../errors.js';
import { describe, redact, type Command } from './command.js';
import { terminate, track } from './process-group.js';

/**
 * A client kept open across several requests (psql holding one transaction). run() cannot do
 * this: it writes all input at once and waits for the exit. Each request is text written to
 * stdin followed by `marker(token)`, a statement that makes the client print the token; the
 * reply is everything printed before the token. The client exiting early is a CommandError with
 * its stderr, like run()'s.
 */
export interface ClientSession {
  request(text: string, signal?: AbortSignal): Promise<string>;
  /** Close stdin (the client ends, its transaction with it) and wait for the exit. */
  close(): Promise<void>;
}

export function openClientSession(command: Command, marker: (token: string) => string, options: { secrets?: readonly string[] } = {}): ClientSession {
  const shown = describe(command, options.secrets);
  const child = spawn(command.file, [...command.args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: command.inheritEnv === false ? { ...command.env } : command.env ? { ...process.env, ...command.env } : process.env,
    cwd: command.cwd,
    uid: command.uid,
    gid: command.gid,
    detached: true,
  });
  track(child);
  let stdout = '';
  let stderr = '';
  let exited: { code: number | null; signal: NodeJS.Signals | null; error?: Error } | undefined;
  let waiter: (() => void) | undefined;
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d: string) => ((stdout += d), waiter?.()));
  child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-8192)));
  child.stdin.on('error', () => undefined); // EPIPE after an early exit: reported through `exited`
  const gone = new Promise<void>((resolve) => {
    child.once('error', (error) => ((exited = { code: null, signal: null, error }), waiter?.(), resolve()));
    child.once('close', (code, signal) => ((exited ??= { code, signal }), waiter?.(), resolve()));
  });
  const failure = (): CommandError => {
    const why = exited?.error ? `could not start: ${exited.error.message}` : exited?.signal ? `killed by ${exited.signal}` : `exited with ${exited?.code}`;
    const stderrTail = redact(tail(stderr), options.secrets);
    return new CommandError({ message: `${shown}: ${why}${stderrTail ? `: ${stderrTail.split('\n').pop()}` : ''}`, command: shown, exitCode: exited?.code ?? undefined, signal: exited?.signal ?? undefined, stderrTail });
  };
  let queue: Promise<unknown> = Promise.resolve();
  const request = (text: string, signal?: AbortSignal): Promise<string> => {
    const next = queue.then(
      () =>
        new Promise<string>((resolve, reject) => {
          const token = `--asb-${randomBytes(6).toString('hex')}--`;
          const onAbort = (): void => (terminate(child), reject(signal?.reason ?? new Error('aborted')));
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
          child.stdin.write(`${text}\n${marker(token)}\n`);
        }),
    );
    queue = next.catch(() => undefined);
    return next;
  };
  const close = async (): Promise<void> => {
    child.stdin.end();
    const timer = setTimeout(() => terminate(child), 30_000);
    await gone;
    clearTimeout(timer);
  };
  return { request, close };
}
