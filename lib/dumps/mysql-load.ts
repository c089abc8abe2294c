import { CommandError } from '../errors.js';
import { startChild, type ChildEnd, type StartedChild } from '../run/child.js';
import { describe, type Command } from '../run/command.js';
import { decompressorCommand } from './compress.js';
import type { Compression } from '../model/kind.js';

export interface ParallelLoadInput {
  /** A mariadb-dump file (one database, no --databases), compressed as `compression`. */
  readonly file: string;
  readonly compression: Compression;
  /** The client, connected to the target database, e.g. `mariadb --defaults-extra-file=… db`. */
  readonly client: Command;
  /** Connections loading at once (2 ≈ myloader -t 2). */
  readonly connections: number;
  readonly signal?: AbortSignal;
  readonly secrets?: readonly string[];
  /** Bytes of INSERTs per connection before the next one takes over (default 8 MiB; tests use less). */
  readonly batchBytes?: number;
}

export interface ParallelLoadResult {
  readonly bytes: number;
  /** Data statements (extended INSERTs) spread over the connections. */
  readonly inserts: number;
}

const INSERT = Buffer.from('INSERT INTO `');
/** Bytes of INSERT statements sent to one connection before moving on (a key range of its own). */
const BATCH = 8 << 20;
/**
 * Load one consistent mariadb-dump file over several connections, as myloader does with its
 * per-chunk files. mariadb-dump writes every extended INSERT on one line (newlines inside values
 * are escaped), so the stream splits into statements at line ends without parsing SQL:
 *
 * - the header (session settings: character set, UNIQUE_CHECKS=0, FOREIGN_KEY_CHECKS=0,
 *   sql_mode, time zone) goes to every connection;
 * - a table's INSERT lines are spread over all connections;
 * - everything else (DDL, DELIMITER blocks with triggers and routines, the trailer) goes, in
 *   order, to the first connection, after a barrier: every connection has executed what it was
 *   sent (a `SELECT 'marker'` echoed back on its stdout). So a table exists before its rows
 *   arrive, and ENABLE KEYS, triggers and views run after all of them.
 * - LOCK TABLES / UNLOCK TABLES are left out: they only speed up a one-connection load, and a
 *   WRITE lock on one connection would block the others.
 *
 * The first failing statement stops its client (no --force): the load fails with its error.
 */
export async function loadSqlDumpParallel(input: ParallelLoadInput): Promise<ParallelLoadResult> {
  const n = Math.max(1, input.connections);
  const children: StartedChild[] = [];
  // Each child's process group is killed when input.signal aborts (lib/run/child.ts).
  const spawnOne = (c: Command, stdin: 'pipe' | 'ignore'): StartedChild => {
    const child = startChild(c, { stdin, signal: input.signal, secrets: input.secrets });
    children.push(child);
    return child;
  };
  const exits = (): Promise<ChildEnd>[] => children.map((c) => c.ended);

  try {
    const source = spawnOne(decompressorCommand(input.compression, input.file), 'ignore');
    // Batch mode: barrier markers come back one per line, without a table around them, and at
    // once (--unbuffered: into a pipe the client holds its output until it exits; the barrier
    // hung). After the option-file options, which the client accepts only first.
    const args = [...input.client.args];
    const first = args.findIndex((a) => !/^--(no-defaults|defaults-file|defaults-extra-file|defaults-group-suffix)/.test(a));
    args.splice(first === -1 ? args.length : first, 0, '--batch', '--skip-column-names', '--unbuffered');
    const client: Command = { ...input.client, args };
    // A connection may hold two batches queued in Node before we wait for it: meanwhile the
    // others keep working.
    const workers = Array.from({ length: n }, () => new Worker(spawnOne(client, 'pipe'), 2 * (input.batchBytes ?? BATCH)));
    // Any process ending early (an SQL error, a corrupt file) must not leave us waiting on a barrier.
    let finishing = false;
    const failure = new Promise<never>((_, reject) => {
      exits().forEach((e, i) => void e.then((r) => {
        if (r.exitCode !== 0 || (i > 0 && !finishing)) reject(stageError(i, r));
      }));
    });
    failure.catch(() => undefined);
    const stageError = (i: number, r: ChildEnd): Error =>
      children[i]!.failure(r, `${i === 0 ? 'decompressing' : 'loading'} ${input.file}`, r.exitCode === 0 && !r.signal ? 'ended before the load did' : undefined);
    const guard = <T>(p: Promise<T>): Promise<T> => Promise.race([p, failure]);

    let bytes = 0;
    let inserts = 0;
    let prelude = true;
    let parallel = false;
    let delimiter = ';';
    let inStatement = false; // a multi-line DDL statement (CREATE TABLE, a trigger body) is open
    const all = async (): Promise<void> => void (await guard(Promise.all(workers.map((w) => w.barrier()))));
    const toAll = async (parts: Buffer[]): Promise<void> => {
      for (const w of workers) await guard(w.write(parts));
    };
    // INSERT statements go to one connection in runs of BATCH bytes, then to the least busy one:
    // each connection fills its own key range of a table, like myloader's -r chunks. Spread
    // statement by statement, both appended to the same last pages and the load got slower
    // than one connection (measured, bench:dumps).
    const BATCH_BYTES = input.batchBytes ?? BATCH;
    let current = workers[0]!;
    let batch = 0;
    const dispatch = async (parts: Buffer[]): Promise<void> => {
      if (!parallel) {
        // The table's CREATE must have run before another connection inserts into it.
        await guard(workers[0]!.barrier());
        parallel = true;
      }
      inserts++;
      if (batch >= BATCH_BYTES) {
        let best = workers[(workers.indexOf(current) + 1) % n]!;
        for (const c of workers) if (c.queued < best.queued) best = c;
        current = best;
        batch = 0;
      }
      for (const p of parts) batch += p.length;
      await guard(current.write(parts));
    };
    // Every line outside INSERT statements: the header to all, the rest in order to the first.
    const onLine = async (line: Buffer): Promise<'insert' | void> => {
      const text = line.subarray(0, 256).toString('utf8');
      if (prelude) {
        if (text === '\n' || text.startsWith('--') || text.startsWith('/*!') || text.startsWith('/*M!')) return toAll([line]);
        prelude = false;
      }
      if (!inStatement && delimiter === ';' && line.subarray(0, INSERT.length).equals(INSERT)) return 'insert';
      if (!inStatement && /^(LOCK TABLES `.*` WRITE|UNLOCK TABLES);\n?$/.test(text)) return;
      if (parallel) {
        await all();
        parallel = false;
      }
      const d = /^DELIMITER (\S+)/.exec(text);
      if (d) delimiter = d[1]!;
      else if (text.trim() !== '' && !(text.startsWith('--') && !inStatement)) inStatement = !line.toString('utf8').trimEnd().endsWith(delimiter);
      await guard(workers[0]!.write([line]));
    };

    // mariadb-dump writes one row per line ("INSERT INTO `t` VALUES\n(…),\n(…);\n", values
    // escape their newlines), so an INSERT ends at the first ");\n": found with indexOf, no
    // per-line work inside the ~1 MB statements.
    let inInsert = false;
    let parts: Buffer[] = [];
    let carry: Buffer = Buffer.alloc(0); // the statement's last 2 bytes, for an end split across chunks
    const END = Buffer.from(');\n');
    for await (const chunk of source.stdout! as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      let pos = 0;
      while (pos < chunk.length) {
        if (inInsert) {
          let end = -1;
          if (pos === 0 && carry.length) {
            const joint = Buffer.concat([carry, chunk.subarray(0, 2)]);
            const at = joint.indexOf(END);
            if (at !== -1) end = at + 3 - carry.length;
          }
          if (end === -1) {
            const at = chunk.indexOf(END, pos);
            if (at !== -1) end = at + 3;
          }
          if (end === -1) {
            parts.push(chunk.subarray(pos));
            carry = chunk.length - pos >= 2 ? chunk.subarray(-2) : Buffer.concat([carry, chunk.subarray(pos)]).subarray(-2);
            break;
          }
          parts.push(chunk.subarray(pos, end));
          pos = end;
          inInsert = false;
          const statement = parts;
          parts = [];
          await dispatch(statement);
          continue;
        }
        const nl = chunk.indexOf(10, pos);
        if (nl === -1) {
          parts.push(chunk.subarray(pos));
          break;
        }
        const line = parts.length ? Buffer.concat([...parts, chunk.subarray(pos, nl + 1)]) : chunk.subarray(pos, nl + 1);
        parts = [];
        pos = nl + 1;
        if ((await onLine(line)) === 'insert') {
          if (line.subarray(-3).equals(END) || line.subarray(-2).equals(Buffer.from(';\n'))) await dispatch([line]);
          else {
            inInsert = true;
            parts = [line];
            carry = line.subarray(-2);
          }
        }
      }
    }
    if (inInsert) throw new CommandError({ message: `loading ${input.file}: the file ends inside an INSERT statement (truncated)`, command: describe(client, input.secrets) });
    if (parts.length) await onLine(Buffer.concat(parts));
    await guard(children[0]!.ended);
    // A barrier is a ';'-terminated SELECT: a file cut inside a DELIMITER block must not hang it.
    if (delimiter !== ';') await guard(workers[0]!.write([Buffer.from('\nDELIMITER ;\n')]));
    await all();
    finishing = true;
    for (const w of workers) w.end();
    await guard(Promise.all(exits()));
    return { bytes, inserts };
  } finally {
    children.forEach((c) => c.stop(1000));
    // Not before every client is gone: a failed restore drops the database and loads the safety
    // dump back next, and a connection still sending INSERTs would write into that.
    await Promise.all(exits());
  }
}

/** One client connection: writes with backpressure, and barriers echoed back on its stdout. */
class Worker {
  private seq = 0;
  private readonly waiting = new Map<string, () => void>();

  constructor(
    private readonly child: StartedChild,
    private readonly maxQueued: number,
  ) {
    child.stdin!.on('error', () => undefined); // its exit status says why
    let rest = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      const lines = (rest + d).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        const done = this.waiting.get(l);
        if (done) {
          this.waiting.delete(l);
          done();
        }
      }
    });
  }

  /** Bytes written but not yet taken by the client. */
  get queued(): number {
    return this.child.stdin!.writableLength;
  }

  /** Queues up to maxQueued bytes without waiting, so one busy connection does not stall the others. */
  async write(parts: readonly Buffer[]): Promise<void> {
    for (const p of parts) {
      this.child.stdin!.write(p);
    }
    while (this.child.stdin!.writableLength > this.maxQueued && !this.child.stdin!.destroyed) await new Promise<void>((r) => this.child.stdin!.once('drain', () => r()));
  }

  /** Resolves once the server has executed everything written so far on this connection. */
  async barrier(): Promise<void> {
    const marker = `asb-barrier-${process.pid}-${++this.seq}`;
    const seen = new Promise<void>((r) => this.waiting.set(marker, r));
    await this.write([Buffer.from(`SELECT '${marker}';\n`)]);
    await seen;
  }

  end(): void {
    this.child.stdin!.end();
  }
}
