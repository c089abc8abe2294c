import type { Command } from './command.js';

/**
 * What run() (execa, captured output) and pipeToFile() (raw spawn, kernel pipes) share about a
 * subprocess's life: how it is started (its own process group, its environment), its time limit,
 * cancellation from outside, and the words for how it ended.
 */

/** Spawn options for a Command: detached, so it leads a process group that kill() can reach whole. */
export function spawnOptions(command: Command): { env: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number; detached: true } {
  const env = command.inheritEnv === false ? { ...command.env } : { ...process.env, ...command.env };
  return { env: env as NodeJS.ProcessEnv, cwd: command.cwd, uid: command.uid, gid: command.gid, detached: true };
}

export interface Limits {
  /** Kill after this long. */
  readonly timeoutMs?: number;
  /** Cancel from outside (SIGTERM of our own process, a sibling failing). */
  readonly signal?: AbortSignal;
}

/** Arms the time limit and the abort listener around `kill`; end() disarms both. */
export class Watch {
  #timedOut = false;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #onAbort: () => void;
  constructor(
    private readonly limits: Limits,
    kill: () => void,
  ) {
    this.#timer = limits.timeoutMs === undefined ? undefined : setTimeout(() => ((this.#timedOut = true), kill()), limits.timeoutMs);
    this.#onAbort = kill;
    limits.signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  get cancelled(): boolean {
    return this.limits.signal?.aborted === true;
  }

  end(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.limits.signal?.removeEventListener('abort', this.#onAbort);
  }

  /**
   * How a process ended that did not succeed, in the words every CommandError uses. A timeout is
   * named before the signal it caused; `countCancel` says "cancelled" for an abort from outside.
   */
  why(end: { readonly signal?: string | null; readonly exitCode?: number | null; readonly startError?: string }, countCancel = false): string {
    if (this.#timedOut) return `timed out after ${formatMs(this.limits.timeoutMs ?? 0)}`;
    if (countCancel && this.cancelled) return 'cancelled';
    if (end.signal) return `killed by ${end.signal}`;
    if (end.exitCode === undefined || end.exitCode === null) return `could not start: ${end.startError ?? 'no exit status'}`;
    return `exited with ${end.exitCode}`;
  }
}

export function formatMs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)}s` : `${Math.round(ms / 1000)}s`;
}
