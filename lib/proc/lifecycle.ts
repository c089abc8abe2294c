import type { Command } from './command.js';

/**
 * What the three primitives share about a subprocess's life: run() (run.ts: a command, its output
 * captured), pipeToFile() (pipeline.ts: stages into a file or a consumer) and startChild()
 * (child.ts: a long-lived process). How it is started (its own process group, its environment),
 * its time limit, cancellation from outside, and the one result that says how it ended.
 */

/** Spawn options for a Command: detached, so it leads a process group that terminate() can reach whole. */
export function spawnOptions(command: Command): { env: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number; detached: true } {
  const env = command.inheritEnv === false ? { ...command.env } : { ...process.env, ...command.env };
  return { env: env as NodeJS.ProcessEnv, cwd: command.cwd, uid: command.uid, gid: command.gid, detached: true };
}

/**
 * How a process ended: the one result type of every primitive (run()'s RunResult adds the
 * captured output, pipeToFile() gives one per stage, startChild() settles `ended` with it).
 */
export interface Ended {
  /** The command line as messages show it (secrets redacted). */
  readonly command: string;
  /** null when it was killed by a signal or never started. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Why it never ran (ENOENT, EACCES, a missing cwd, a spawner worker that died). */
  readonly startError?: string;
  /** The end of what it wrote on stderr (redacted); '' when its stderr went elsewhere. */
  readonly stderrTail: string;
  /** From start to exit (for a dump tool holding LOCK TABLES: an upper bound of the lock time). */
  readonly durationMs: number;
  /** Ended by its time limit (Limits.timeoutMs). */
  readonly timedOut: boolean;
}

export interface Limits {
  /** Kill after this long. */
  readonly timeoutMs?: number;
  /** Cancel from outside (SIGTERM of our own process, a sibling failing). */
  readonly signal?: AbortSignal;
}

/** pipeToFile()'s options (pipeline.ts), whichever way it runs the stages. */
export interface PipelineOptions extends Limits {
  readonly secrets?: readonly string[];
  /**
   * Accept a stage that exited non-zero (getfacl exits 1 when a file vanished mid-walk but wrote
   * everything else). Its result is still returned, so the caller can report it.
   */
  readonly tolerate?: (stage: Ended, index: number) => boolean;
  /**
   * See the output of stage `after` on its way: Node relays it into the next stage (or, for the
   * last stage, into the file) and hands every chunk to `onData`. This is how a dump is checked
   * while it streams (its trailer) instead of decompressing the finished file again; it costs one
   * extra copy through Node, which is less than the re-read. A chunk is valid only during the
   * onData call.
   */
  readonly tap?: {
    readonly after: number;
    readonly onData: (chunk: Buffer) => void;
    /** Paces the tapped stage's output (dumps.max_rate): the relay reads on only once it returns. */
    readonly pace?: (bytes: number) => Promise<void>;
  };
  /**
   * false: do not fsync `file` (the caller makes a whole run durable at once with one syncfs,
   * lib/proc/sync-fs.ts, before anything claims it is complete). Default true.
   */
  readonly fsync?: boolean;
}

export interface PipelineResult {
  readonly bytes: number;
  readonly sha256: string;
  readonly durationMs: number;
  /** How each stage ended, in order. */
  readonly stages: readonly Ended[];
  /** 'pipes': kernel pipes, all stages at once; 'files': one after the other through files, by a Spawner. */
  readonly via: 'pipes' | 'files';
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
    return endedWhy(end);
  }
}

/** "exited with N", "killed by SIG", "could not start: …": an end in the words every message uses. */
export function endedWhy(end: { readonly signal?: string | null; readonly exitCode?: number | null; readonly startError?: string }): string {
  if (end.signal) return `killed by ${end.signal}`;
  if (end.exitCode === undefined || end.exitCode === null) return `could not start: ${end.startError ?? 'no exit status'}`;
  return `exited with ${end.exitCode}`;
}

export function formatMs(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)}s` : `${Math.round(ms / 1000)}s`;
}
