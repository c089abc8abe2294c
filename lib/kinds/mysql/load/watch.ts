import { RestoreError } from '../../../errors.js';

/**
 * The parallel loader's watchdog: a restore never waits forever. A load makes no progress when
 * one of its connections waits for a lock another of them holds (that one idle, waiting for us),
 * or when a client reads on because the statement it was given never ends. Neither ends by
 * itself: the server's lock_wait_timeout is a year, and a client waits for input as long as its
 * stdin is open.
 *
 * Progress is anything that moved: a statement or barrier completed, bytes taken by a client.
 * After `stallMs` without any while work is outstanding, the server is asked what our
 * connections do; when none of them is executing (each idle, or waiting for a lock), the load is
 * stalled: every connection of ours is killed on the server (so nothing goes on writing into the
 * database the restore rolls back next) and the load fails with exit 8, naming the statement.
 */
export interface WatchedConnection {
  /** The server's id of the connection (CONNECTION_ID()), once known. */
  readonly id: () => number | undefined;
  /** Work handed to it that has not completed. */
  readonly pending: () => boolean;
  /** The start of what it was given last. */
  readonly lastSent: () => Buffer | undefined;
  readonly name: string;
}

export interface LoadWatchOptions {
  readonly doing: string;
  readonly stallMs: number;
  readonly everyMs: number;
  /** Rows of a query on a connection of its own. */
  readonly ask: (sql: string) => Promise<string[][]>;
  readonly onStall: (err: RestoreError) => void;
}

export class LoadWatch {
  private readonly watched: WatchedConnection[] = [];
  private last = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private stalled = false;

  constructor(private readonly opts: LoadWatchOptions) {}

  add(c: WatchedConnection): void {
    this.watched.push(c);
  }

  progress(): void {
    this.last = Date.now();
  }

  start(): void {
    this.timer = setInterval(() => void this.check().catch(() => undefined), this.opts.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Once the connections of a stalled load are killed on the server. */
  async settled(): Promise<void> {
    await this.killing;
  }

  private killing: Promise<void> | undefined;

  private async check(): Promise<void> {
    if (this.checking || this.stalled) return;
    const pending = this.watched.filter((c) => c.pending());
    if (!pending.length || Date.now() - this.last < this.opts.stallMs) {
      if (!pending.length) this.last = Date.now();
      return;
    }
    this.checking = true;
    try {
      const ids = this.watched.map((c) => c.id()).filter((id): id is number => id !== undefined);
      const rows = ids.length ? await this.opts.ask(`SELECT ID, COMMAND, IFNULL(STATE, ''), IFNULL(LEFT(INFO, 200), '') FROM information_schema.PROCESSLIST WHERE ID IN (${ids.join(',')})`) : [];
      const executing = rows.some((r) => r[1] !== 'Sleep' && !/^Waiting for .*lock/i.test(r[2] ?? ''));
      // A long statement (an index build, a 1 GB row) is progress the counters cannot see.
      if (executing || Date.now() - this.last < this.opts.stallMs) {
        if (executing) this.last = Date.now();
        return;
      }
      this.stalled = true;
      const waiting = rows.find((r) => /^Waiting for .*lock/i.test(r[2] ?? ''));
      const idle = pending.find((c) => rows.find((r) => Number(r[0]) === c.id())?.[1] === 'Sleep') ?? pending[0]!;
      const what = waiting
        ? `connection ${waiting[0]} waits (${waiting[2]}) in: ${waiting[3]}`
        : `the ${idle.name} is idle on the server while it reads on (a statement that does not end), after: ${shown(idle.lastSent())}`;
      // The failure first (a client whose connection is killed ends with an error of its own),
      // then the connections; the loader waits for that (settled()) before it lets go.
      this.opts.onStall(new RestoreError(`${this.opts.doing}: no progress for ${Math.round((Date.now() - this.last) / 1000)} s, stopped: ${what}`, { stalled: true }));
      this.killing = (async () => {
        for (const id of ids) await this.opts.ask(`KILL CONNECTION ${id}`).catch(() => undefined);
      })();
    } finally {
      this.checking = false;
    }
  }
}

/** The first 200 bytes of a statement, as text. */
export function shown(statement: Buffer | undefined): string {
  if (!statement) return '(nothing)';
  return JSON.stringify(statement.subarray(0, 200).toString('utf8'));
}
