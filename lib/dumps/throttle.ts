import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { durationMs } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { DatabaseSession } from '../model/kind.js';

export interface ThrottleSettings {
  readonly threads_running: 'auto' | number;
  readonly max_wait: number | string;
}

/**
 * Server-side pacing, like mydumper's --throttle: before a dump starts, look at how many
 * statements the server runs for others (Threads_running minus our own dumps); while that is
 * above the threshold the sites are busy, and a new dump waits. Nice and ionice cannot do this:
 * the server's half of a dump runs in mariadbd's threads at the server's priority.
 *
 * The server is asked at most once per `pollMs` (a run of 1,000 small databases must not pay a
 * client process per database), and a dump never waits longer than max_wait: a late backup beats
 * none. A server that cannot say (query failed) is not busy.
 */
export class ServerPacer {
  private readonly threshold: number;
  private readonly maxWaitMs: number;
  private readonly seen = new Map<DatabaseSession, { at: number; load: number | undefined }>();
  private readonly ours = new Map<DatabaseSession, number>();
  /** Total time dumps waited for a busy server (for logs and the bench). */
  pausedMs = 0;

  constructor(
    settings: ThrottleSettings,
    private readonly log: Logger,
    cores = availableParallelism(),
    private readonly pollMs = 1000,
  ) {
    this.threshold = settings.threads_running === 'auto' ? Math.max(4, 2 * cores) : settings.threads_running;
    this.maxWaitMs = durationMs(settings.max_wait);
  }

  /** `work` once the server is not busy (or max_wait has passed), counted as one of our dumps meanwhile. */
  async run<T>(session: DatabaseSession, what: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.waitForServer(session, what, signal);
    this.ours.set(session, (this.ours.get(session) ?? 0) + 1);
    try {
      return await work();
    } finally {
      this.ours.set(session, (this.ours.get(session) ?? 1) - 1);
    }
  }

  private async waitForServer(session: DatabaseSession, what: string, signal?: AbortSignal): Promise<void> {
    if (this.threshold === 0 || !session.serverLoad) return;
    const started = Date.now();
    let busy: number | undefined;
    for (;;) {
      const others = await this.othersRunning(session, signal);
      if (others === undefined || others <= this.threshold || signal?.aborted) break;
      busy = others;
      if (Date.now() - started >= this.maxWaitMs) {
        this.log.info(`server still busy (${others} statements running) after ${Math.round((Date.now() - started) / 1000)} s: dumping ${what} anyway`);
        break;
      }
      await sleep(this.pollMs, undefined, { signal }).catch(() => undefined);
    }
    if (busy !== undefined) {
      const waited = Date.now() - started;
      this.pausedMs += waited;
      this.log.info(`paused ${Math.round(waited / 100) / 10} s before dumping ${what}: the server was busy (${busy} statements running, threshold ${this.threshold})`);
    }
  }

  private async othersRunning(session: DatabaseSession, signal?: AbortSignal): Promise<number | undefined> {
    let last = this.seen.get(session);
    if (!last || Date.now() - last.at >= this.pollMs) {
      const load = await session.serverLoad!(signal).catch((err: unknown) => {
        this.log.debug('throttle: cannot read the server load', { error: err instanceof Error ? err.message : String(err) });
        return undefined;
      });
      last = { at: Date.now(), load };
      this.seen.set(session, last);
    }
    // Each of our dumps running on this server is one of its running statements.
    return last.load === undefined ? undefined : Math.max(0, last.load - (this.ours.get(session) ?? 0));
  }
}
