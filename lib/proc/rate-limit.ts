import { setTimeout as sleep } from 'node:timers/promises';

/**
 * At most `bytesPerSecond` through every stream that takes from it, together (dumps.max_rate).
 * A relay calls take() after each chunk it passed on and reads the next only once it returns:
 * the dump tool then blocks on its output, and the server's thread serving it on its socket, so
 * the server does that much less work per second for us. Up to `burstMs` of unused time is
 * credited (a stream that paused is not held back for it later, nor does it run ahead).
 */
export class RateLimit {
  private caughtUp = 0; // when everything taken so far is paid for (performance.now() ms)

  constructor(
    readonly bytesPerSecond: number,
    private readonly burstMs = 100,
  ) {
    if (!(bytesPerSecond > 0)) throw new Error(`RateLimit: ${bytesPerSecond} bytes per second`);
  }

  /** Returns early when `signal` aborts: the caller's next step sees the abort and says why. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    this.caughtUp = Math.max(this.caughtUp, now - this.burstMs) + (bytes * 1000) / this.bytesPerSecond;
    const wait = this.caughtUp - now;
    if (wait > 1) await sleep(wait, undefined, { signal }).catch(() => undefined);
  }
}
