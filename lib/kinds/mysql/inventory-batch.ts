import type { Inventory } from '../../model/inventory.js';
import { mysqlInventorySql, parseMysqlInventory } from './inventory.js';

/** What one dump asks for: its database's inventory, read after the dump that started then. */
export interface InventoryRequest {
  readonly database: string;
  readonly dumpStartedAt: Date;
  readonly skipped: readonly string[];
}

type Query = (sql: string, signal?: AbortSignal) => Promise<string[][]>;

interface Waiting {
  readonly request: InventoryRequest;
  readonly at: number;
  readonly signal?: AbortSignal;
  readonly resolve: (inventory: Inventory) => void;
  readonly reject: (err: unknown) => void;
}

/** Tags the rows of the n-th database of a batch; no inventory row starts with it. */
const MARK = 'asb-db';

/** One dump about to start: it will ask for its inventory (read) or end without it (cancel). */
export interface InventoryTicket {
  read(request: InventoryRequest, signal?: AbortSignal): Promise<Inventory>;
  /** The dump ended without asking (it failed): nobody waits for it any more. Idempotent. */
  cancel(): void;
}

/**
 * Reads the inventories of dumps that finished close together with one `mariadb` client. A
 * client per database is a fork of our ~100 MB process (2.7-3.4 ms on the bench's machine) and a
 * login: for 1,000 tiny databases that was a third of our own CPU. A batch starts when none is
 * running and its oldest request has waited `lingerMs` (or the batch is full); what arrives
 * meanwhile goes into the next one. Without the wait, two dumps finishing in turn every ~12 ms
 * made batches of one or two: the bench's profile still showed a client per database.
 * Each database's script keeps its own snapshot and its own UPDATE_TIME check, so waiting for a
 * batch changes nothing but when the counts are read. If a batch of several fails (the client
 * stops at the first error), each database is read again alone, so one damaged table costs only
 * its own database's inventory.
 */
export class InventoryBatcher {
  private readonly waiting: Waiting[] = [];
  private busy = false;
  private timer: NodeJS.Timeout | undefined;
  /** Tickets neither read nor cancelled: dumps running now that will ask. */
  private running = 0;
  /** Clients started (for tests and the log). */
  batches = 0;

  constructor(
    private readonly query: Query,
    private readonly countMaxBytes: number | undefined,
    private readonly maxBatch = 50,
    /**
     * How long the oldest request may wait for company. The counts are read this much later
     * than they could be, which costs nothing but a wider window for UPDATE_TIME to flag a table
     * as written since the dump started (it is then checked for presence, not rows). Only while
     * a dump that will ask is still running (see expect): the last dumps of a run do not wait
     * for nobody (150 ms at the end of every run, the whole run waiting on it).
     */
    private readonly lingerMs = 0,
  ) {}

  /** Announce a dump right before it starts: reads wait for company only while one is running. */
  expect(): InventoryTicket {
    this.running++;
    let open = true;
    const done = (): boolean => {
      if (!open) return false;
      open = false;
      this.running--;
      return true;
    };
    return {
      read: (request, signal) => {
        done();
        return this.read(request, signal);
      },
      cancel: () => {
        if (done()) this.next();
      },
    };
  }

  read(request: InventoryRequest, signal?: AbortSignal): Promise<Inventory> {
    return new Promise<Inventory>((resolve, reject) => {
      this.waiting.push({ request, at: Date.now(), signal, resolve, reject });
      this.next();
    });
  }

  private next(): void {
    if (this.busy || this.waiting.length === 0) return;
    const waited = Date.now() - this.waiting[0]!.at;
    if (this.waiting.length < this.maxBatch && waited < this.lingerMs && this.running > 0) {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.next();
      }, this.lingerMs - waited);
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.waiting.splice(0, this.maxBatch);
    this.busy = true;
    void this.readBatch(batch).finally(() => {
      this.busy = false;
      this.next();
    });
  }

  private async readBatch(batch: readonly Waiting[]): Promise<void> {
    try {
      const inventories = await this.readTogether(batch.map((w) => w.request), batch[0]!.signal);
      batch.forEach((w, i) => w.resolve(inventories[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      for (const w of batch) await this.readTogether([w.request], w.signal).then(([inventory]) => w.resolve(inventory!), w.reject);
    }
  }

  private async readTogether(requests: readonly InventoryRequest[], signal?: AbortSignal): Promise<Inventory[]> {
    const started = Date.now();
    const options = { updateTimes: true, countMaxBytes: this.countMaxBytes };
    const sql = requests.map((r, i) => `SELECT '${MARK}', ${i};\n` + mysqlInventorySql(r.database, options)).join('');
    this.batches++;
    const rows = await this.query(sql, signal);
    const per: string[][][] = requests.map(() => []);
    let current = -1;
    for (const row of rows) {
      if (row[0] === MARK) current = Number(row[1]);
      else if (current >= 0) per[current]!.push(row);
    }
    const ms = Date.now() - started;
    return requests.map((r, i) => parseMysqlInventory(per[i]!, { dumpStartedAt: r.dumpStartedAt, countMaxBytes: this.countMaxBytes, skipped: r.skipped, ms }));
  }
}
