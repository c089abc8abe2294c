import { CommandError } from '../../../errors.js';
import { startChild, type StartedChild } from '../../../proc/child.js';
import { describe, type Command } from '../../../proc/command.js';
import { pipeToReader } from '../../../proc/pipeline.js';
import type { ChunkReader } from '../../../proc/reused-reader.js';
import { decompressorCommand } from '../../../dumps/compress.js';
import { binarySafeTables, headerNames, namesAreUtf8 } from './charsets.js';
import { indexSqlDump, TruncatedDumpError, type DumpIndex, type RowsSegment } from './dump-index.js';
import { splitStatements } from './lexer.js';
import { LoadWatch } from './watch.js';
import type { Compression } from '../../../model/kind.js';

export interface ParallelLoadInput {
  /** A mariadb-dump file (one database, no --databases), compressed as `compression`. */
  readonly file: string;
  readonly compression: Compression;
  /** The client, connected to the target database, e.g. `mariadb --defaults-extra-file=… db`. */
  readonly client: Command;
  /** Connections loading at once (2 ≈ myloader -t 2). */
  readonly connections: number;
  /**
   * Opens one connection for rows (mysql-wire.ts: the protocol, no client parsing every byte),
   * its character set fixed when it connects: 'binary' for tables whose rows are the same bytes
   * either way (load/charsets.ts), else the dump's NAMES. Without it, or when one fails to
   * open, every connection is a client process.
   */
  readonly openRows?: (charset: RowCharset) => Promise<RowSink>;
  readonly signal?: AbortSignal;
  readonly secrets?: readonly string[];
  /** Tables with fewer bytes of rows load on one connection (default 4 MiB; tests use less). */
  readonly splitBytes?: number;
  /** The file's map when it was already read (mapSqlDump: the restore reads its DEFINERs from it). */
  readonly index?: DumpIndex;
  /** No progress for this long, none of our connections executing: the load fails (default 60 s). */
  readonly stallMs?: number;
}

export interface ParallelLoadResult {
  readonly bytes: number;
  /** Data statements (extended INSERTs) spread over the connections. */
  readonly inserts: number;
  /** 'protocol' when the rows went over protocol connections, 'client' over client processes. */
  readonly rowsVia: 'protocol' | 'client';
  /** Why the protocol connections were not used when offered (the client loaded the rows). */
  readonly protocolRefused?: string;
  /** Tables whose rows went over binary protocol connections. */
  readonly binaryTables: number;
  /** Why the whole file went through one client as it is (the map could not prove its statements). */
  readonly serial?: string;
}

/** A protocol connection's character set: the rows' bytes are sent as they are in it. */
export type RowCharset = 'binary' | 'utf8mb4' | 'utf8mb3';

/** Where one connection's rows go: a client process (ClientSink) or a protocol connection. */
export interface RowSink {
  /** Takes runs of statements as they are (a client), or one statement at a time. */
  readonly whole?: boolean;
  /** Statements it can carry as they are (a protocol connection: valid UTF-8 only). */
  takes(statement: Buffer): boolean;
  send(statement: Buffer): Promise<void>;
  /** Resolves once the server has executed everything sent so far; throws its first failure. */
  drain(): Promise<void>;
  close(): Promise<void>;
  destroy(): void;
  /** The server's id of its connection, once known (the watchdog asks the server about it). */
  connectionId?(): number | undefined;
}

const SPLIT = 4 << 20;

/**
 * Load one consistent mariadb-dump file over several connections, as myloader does with its
 * per-chunk files. A first pass maps the file (load/dump-index.ts); then
 *
 * - the header (session settings) runs on every connection (on a protocol connection, all but
 *   its character set, which the connection was opened with);
 * - a table's rows go over 'binary' protocol connections where the bytes mean the same either
 *   way (load/charsets.ts: the server skips checking every string), else over ones in the
 *   dump's own NAMES;
 * - the schema, triggers, routines, views and the trailer run in order on one client, the
 *   coordinator, and a table's rows only after its CREATE has run (a barrier: the client echoes
 *   a marker back). The next table's DDL runs ahead of the rows above it (earlySql); a trigger,
 *   a routine or the trailer waits for every row before it (it ends a phase);
 * - a phase's rows are cut into one contiguous part of the file per connection (partitionRows),
 *   each read from that connection's own pass over the file (decompressing is cheap next to
 *   loading): different tables at once where the sizes allow, a table split where one is big.
 *   Taking 8 MiB turns, two connections filled neighbouring pages of the same indexes: the server
 *   spent 40 s of CPU on the bench's 1.1 GB against 34.5 s for one connection (a prototype).
 *
 * The first failing statement stops the load (no --force): it fails with its error.
 */
export async function loadSqlDumpParallel(input: ParallelLoadInput): Promise<ParallelLoadResult> {
  const load = new ParallelLoad(input);
  try {
    // Nothing has started yet, so a failing map needs no guard: it is the error, naming the file.
    const index = input.index ?? (await mapSqlDump(input.file, input.compression, input.signal));
    return await load.run(index);
  } finally {
    await load.dispose();
  }
}

/** Rows sent verbatim by the coordinator in their place, and the readers and sinks the rows go through. */
interface RowRoutes {
  readonly binary: ReadonlySet<string>;
  readonly serialReader: RangeReader | undefined;
  readonly rowsVia: ParallelLoadResult['rowsVia'];
  readonly protocolRefused?: string;
}

/**
 * One load's processes, connections and readers (loadSqlDumpParallel). Each child's process
 * group is killed when input.signal aborts (lib/proc/child.ts). Any process ending badly (an SQL
 * error, a corrupt file), or a client ending before the load did, must not leave us waiting on
 * a barrier: guard() races every wait against `failures`.
 */
class ParallelLoad {
  private readonly n: number;
  private readonly children: StartedChild[] = [];
  private readonly sinks: RowSink[] = [];
  /** Where a table's rows go: one set of sinks per character set (client sinks serve both). */
  private pools: { binary: RowSink[]; text: RowSink[] } = { binary: [], text: [] };
  /** Every pass over the file this load started (closed at the end). */
  private readonly readers: RangeReader[] = [];
  /** One pass per connection slot, shared by the slot's binary and text sinks. */
  private readonly slotReaders: RangeReader[] = [];
  private finishing = false;
  private readonly failures: Promise<never>[] = [];
  private readonly doing: string;
  private readonly shown: string;
  private readonly client: Command;
  private readonly watch: LoadWatch;
  private monitor: ClientSink | undefined;

  constructor(private readonly input: ParallelLoadInput) {
    this.n = Math.max(1, input.connections);
    this.doing = `loading ${input.file}`;
    this.shown = describe(input.client, input.secrets);
    this.client = batchClient(input.client);
    let stall: (err: Error) => void = () => undefined;
    const stalled = new Promise<never>((_, reject) => (stall = reject));
    stalled.catch(() => undefined);
    this.failures.push(stalled);
    const stallMs = input.stallMs ?? 60_000;
    this.watch = new LoadWatch({
      doing: this.doing,
      stallMs,
      everyMs: Math.max(200, Math.min(5000, stallMs / 4)),
      ask: (sql) => (this.monitor ??= new ClientSink(this.spawn(this.client, `watching ${input.file}`, () => true))).ask(sql),
      onStall: (err) => stall(err),
    });
  }

  async run(index: DumpIndex): Promise<ParallelLoadResult> {
    this.watch.start();
    const coordinator = this.openClient('client that runs the schema');
    if (index.serial !== undefined) return this.loadWhole(index, coordinator);
    const header = Buffer.concat(index.header);
    await this.guard(coordinator.send(header));
    const rowTables = index.segments.filter((s): s is RowsSegment => s.kind === 'rows' && !s.serial).map((s) => s.table);
    const routes = await this.openRoutes(index, header, rowTables);

    // Rows wait only for their table's CREATE; DDL that cannot change what rows already loaded
    // runs ahead (see earlySql), so a phase's rows can be cut over the connections as a whole.
    let phase: PhaseTable[] = [];
    const deferred: Buffer[] = [];
    let created: Promise<void> | undefined;
    const endPhase = async (): Promise<void> => {
      if (!phase.length) return;
      await this.loadPhase(phase.splice(0), coordinator, routes.binary);
      for (const text of deferred.splice(0)) await this.guard(coordinator.send(text));
    };
    for (const [i, seg] of index.segments.entries()) {
      if (seg.kind === 'rows' && seg.serial) {
        // In order, after every row above it (the sql before it did not run early).
        await endPhase();
        for (const [start, end] of seg.blocks) await this.guard(coordinator.send(await this.read(routes.serialReader!, start, end)));
        created = undefined;
        continue;
      }
      if (seg.kind === 'rows') {
        // The table's CREATE must have run before another connection inserts into it.
        if (!created) {
          created = this.guard(coordinator.drain());
          created.catch(() => undefined); // awaited by the table's pieces; a failure ends the load there
        }
        phase.push({ seg, ready: created });
        continue;
      }
      const next = index.segments[i + 1];
      const early = next && !(next.kind === 'rows' && next.serial) ? earlySql(seg.text) : undefined;
      if (!early) await endPhase();
      await this.guard(coordinator.send(early?.now ?? seg.text));
      if (early) deferred.push(...early.later);
      created = undefined;
    }
    await endPhase();
    const binaryTables = routes.rowsVia === 'protocol' ? rowTables.filter((t) => routes.binary.has(t) && this.pools.binary.length > 0).length : 0;
    // A barrier is a ';'-terminated SELECT: a file cut inside a DELIMITER block must not hang it.
    if (index.finalDelimiter !== ';') await this.guard(coordinator.send(Buffer.from('\nDELIMITER ;\n')));
    await this.guard(coordinator.drain());
    this.finishing = true;
    await this.guard(Promise.all(this.sinks.map((s) => s.close())));
    await this.guard(coordinator.close());
    return { bytes: index.bytes, inserts: index.inserts, rowsVia: routes.rowsVia, protocolRefused: routes.protocolRefused, binaryTables };
  }

  async dispose(): Promise<void> {
    this.watch.stop();
    await this.watch.settled();
    this.monitor?.destroy();
    for (const s of this.sinks) s.destroy();
    // Readers whose last range ended before the file did are still running: stopped here, their
    // pipes closed (a paused pipe never sees its end, and the child would never count as ended).
    this.children.forEach((c) => void c.terminate(1000));
    for (const r of this.readers) r.close();
    // Not before every client is gone: a failed restore drops the database and loads the safety
    // dump back next, and a connection still sending INSERTs would write into that.
    await Promise.all(this.children.map((c) => c.ended));
  }

  /** Not provably split: the whole file, as it is, through the one client (a hand load). */
  private async loadWhole(index: DumpIndex, coordinator: ClientSink): Promise<ParallelLoadResult> {
    const whole = new RangeReader(await this.decompress());
    this.readers.push(whole);
    const step = 4 << 20;
    for (let at = 0; at < index.bytes; at += step) await this.guard(coordinator.send(await this.read(whole, at, Math.min(index.bytes, at + step))));
    await this.guard(coordinator.drain());
    this.finishing = true;
    await this.guard(coordinator.close());
    return { bytes: index.bytes, inserts: 0, rowsVia: 'client', binaryTables: 0, serial: index.serial };
  }

  /** The connections the rows go over (protocol ones when offered and they open, else clients) and a pass over the file for each. */
  private async openRoutes(index: DumpIndex, header: Buffer, rowTables: readonly string[]): Promise<RowRoutes> {
    let rowsVia: ParallelLoadResult['rowsVia'] = 'client';
    let protocolRefused: string | undefined;
    const serialReader = index.segments.some((s) => s.kind === 'rows' && s.serial) ? new RangeReader(await this.decompress()) : undefined;
    if (serialReader) this.readers.push(serialReader);
    const binary = binarySafeTables(index);
    const names = headerNames(index.header);
    const openRows = this.input.openRows;
    if (rowTables.length && openRows) {
      try {
        // A connection's encoding is the one it connected with: a SET NAMES on it would make the
        // connector re-encode the text it is given, so the header's NAMES is not run on it.
        if (!namesAreUtf8(names)) throw new Error(`the dump's rows are ${names} text, which the loading connections do not send as is`);
        const text: RowCharset = names === 'utf8mb3' || names === 'utf8' ? 'utf8mb3' : 'utf8mb4';
        const open = async (charset: RowCharset, into: RowSink[]): Promise<void> => {
          for (let i = 0; i < this.n; i++) {
            const sink = this.tracked(await openRows(charset), `${charset} protocol connection ${i + 1}`);
            this.sinks.push(sink);
            into.push(sink);
            for (const line of index.header) if (isSessionSetting(line) && !setsCharset(line)) await sink.send(line);
          }
        };
        if (rowTables.some((t) => binary.has(t))) await open('binary', this.pools.binary);
        if (rowTables.some((t) => !binary.has(t))) await open(text, this.pools.text);
        rowsVia = 'protocol';
      } catch (err) {
        // The client may still connect where the protocol could not (an auth plugin it lacks).
        protocolRefused = err instanceof Error ? err.message : String(err);
        for (const s of this.sinks.splice(0)) s.destroy();
        this.pools = { binary: [], text: [] };
      }
    }
    if (rowTables.length && rowsVia === 'client') {
      for (let i = 0; i < this.n; i++) {
        const sink = this.openClient(`rows client ${i + 1}`);
        await this.guard(sink.send(header));
        this.sinks.push(sink);
      }
      this.pools = { binary: this.sinks, text: this.sinks };
    }
    if (rowTables.length) for (let i = 0; i < this.n; i++) this.slotReaders.push(new RangeReader(await this.decompress()));
    this.readers.push(...this.slotReaders);
    return { binary, serialReader, rowsVia, ...(protocolRefused !== undefined ? { protocolRefused } : {}) };
  }

  /** A phase's rows, cut into one contiguous part of the file per connection (partitionRows). */
  private async loadPhase(phase: readonly PhaseTable[], coordinator: ClientSink, binary: ReadonlySet<string>): Promise<void> {
    const parts = partitionRows(phase, this.n, this.input.splitBytes ?? SPLIT);
    // A table split over connections gets its first rows from one of them alone: two first
    // INSERTs into the same empty InnoDB table deadlock now and then (1213, seen in the suite),
    // which a client process cannot retry (a protocol connection does: mysql-wire.ts).
    const split = tablesInSeveralParts(parts);
    const opened = new Map<string, Promise<void>>();
    await this.guard(Promise.all(parts.map(async (pieces, j) => {
      for (const piece of pieces) {
        await this.guard(piece.ready);
        const asBinary = binary.has(piece.seg.table) && this.pools.binary.length > 0;
        const sink = (asBinary ? this.pools.binary : this.pools.text)[j]!;
        const multi = new Set((piece.seg.multi ?? []).map((k) => piece.seg.blocks[k]));
        let opening: (() => void) | undefined;
        if (split.has(piece.seg.table)) {
          const first = opened.get(piece.seg.table);
          if (first) await this.guard(first);
          else opened.set(piece.seg.table, new Promise<void>((resolve) => (opening = resolve)));
        }
        for (const block of piece.blocks) {
          const run = await this.read(this.slotReaders[j]!, block[0], block[1]);
          for (const statement of sink.whole || !multi.has(block) ? [run] : splitStatements(run, piece.seg.nbe === true)) {
            // Bytes a protocol connection would re-encode (not UTF-8): sent as they are, by the client.
            const via = sink.takes(statement) ? sink : coordinator;
            await via.send(statement);
            if (opening) {
              await this.guard(via.drain());
              opening();
              opening = undefined;
            }
          }
        }
        opening?.();
        await sink.drain();
      }
    })));
  }

  private guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, ...this.failures]);
  }

  /** A range of the file; a file that ends short of it is the load's error, naming the file. */
  private read(reader: RangeReader, start: number, end: number): Promise<Buffer> {
    return reader.read(start, end).catch((err: unknown) => {
      throw err instanceof TruncatedDumpError ? new CommandError({ message: `${this.doing}: ${err.message}`, command: this.shown }) : err;
    });
  }

  private watchOne(child: StartedChild, doing: string, mayEnd: () => boolean): StartedChild {
    this.children.push(child);
    const failed = new Promise<never>((_, reject) => void child.ended.then((r) => {
      if (r.exitCode !== 0 || !mayEnd()) reject(child.failure(r, doing, r.exitCode === 0 && !r.signal ? 'ended before the load did' : undefined));
    }));
    failed.catch(() => undefined);
    this.failures.push(failed);
    return child;
  }

  private spawn(c: Command, doing: string, mayEnd: () => boolean): StartedChild {
    return this.watchOne(startChild(c, { stdin: 'pipe', signal: this.input.signal, secrets: this.input.secrets }), doing, mayEnd);
  }

  /** A decompressor may end whenever its exit is clean: a reader that got short bytes says so. */
  private async decompress(): Promise<ChunkReader> {
    const { child, reader } = await pipeToReader(decompressorCommand(this.input.compression, this.input.file), { signal: this.input.signal });
    this.watchOne(child, `decompressing ${this.input.file}`, () => true);
    return reader;
  }

  private openClient(name: string): ClientSink {
    return this.tracked(new ClientSink(this.spawn(this.client, this.doing, () => this.finishing), () => this.watch.progress()), name);
  }

  /** Every sink the load waits on, as the watchdog sees it. */
  private tracked<T extends RowSink>(sink: T, name: string): T {
    let outstanding = 0;
    let last: Buffer | undefined;
    const around = async <R>(p: () => Promise<R>): Promise<R> => {
      outstanding++;
      try {
        const r = await p();
        this.watch.progress();
        return r;
      } finally {
        outstanding--;
      }
    };
    this.watch.add({ name, id: () => sink.connectionId?.(), pending: () => outstanding > 0, lastSent: () => last });
    const send = sink.send.bind(sink);
    const drain = sink.drain.bind(sink);
    sink.send = (statement: Buffer) => {
      last = Buffer.from(statement.subarray(0, 200));
      return around(() => send(statement));
    };
    sink.drain = () => around(() => drain());
    return sink;
  }
}

/**
 * Map a dump file (load/dump-index.ts) without loading it: a truncated file or a failing
 * decompressor is an error naming the file, before anything was changed.
 */
export async function mapSqlDump(file: string, compression: Compression, signal?: AbortSignal): Promise<DumpIndex> {
  const { child: scan, reader } = await pipeToReader(decompressorCommand(compression, file), { signal });
  const ended = scan.ended.then((r) => {
    if (r.exitCode !== 0) throw scan.failure(r, `decompressing ${file}`);
  });
  ended.catch(() => undefined);
  try {
    const index = await Promise.race([indexSqlDump(reader), ended.then(() => new Promise<never>(() => undefined))]);
    await ended;
    return index;
  } catch (err) {
    if (err instanceof TruncatedDumpError) throw new CommandError({ message: `reading ${file}: ${err.message}`, command: describe(decompressorCommand(compression, file)) });
    throw err;
  } finally {
    reader.close();
    void scan.terminate(1000);
    await scan.ended;
  }
}

/**
 * Batch mode: barrier markers come back one per line, without a table around them, and at once
 * (--unbuffered: into a pipe the client holds its output until it exits; the barrier hung).
 * After the option-file options, which the client accepts only first.
 */
function batchClient(c: Command): Command {
  const args = [...c.args];
  const first = args.findIndex((a) => !/^--(no-defaults|defaults-file|defaults-extra-file|defaults-group-suffix)/.test(a));
  args.splice(first === -1 ? args.length : first, 0, '--batch', '--skip-column-names', '--unbuffered', '--comments');
  return { ...c, args };
}

/** A header line a protocol connection runs too: `/*!40101 SET NAMES utf8mb4 *\/;` and the like. */
function isSessionSetting(line: Buffer): boolean {
  return /^\/\*M?!\d+\s+SET\s[^\n]*\*\/;\s*$/i.test(line.toString('utf8'));
}

/** `SET NAMES …`, `SET character_set_client = …` and the like (and the saving of their old values). */
function setsCharset(line: Buffer): boolean {
  return /\bNAMES\b|CHARACTER[ _]SET|COLLATION_CONNECTION/i.test(line.toString('latin1'));
}

/** A table's rows in the phase being loaded, and when its CREATE has run. */
export interface PhaseTable {
  readonly seg: RowsSegment;
  readonly ready: Promise<void>;
}

/** A run of one table's blocks that one connection loads. */
export interface RowPiece extends PhaseTable {
  readonly blocks: readonly (readonly [number, number])[];
}

/**
 * The rows of a phase (the tables between two statements that must wait for rows, such as a
 * trigger) cut into one contiguous part of the file per connection, of equal bytes: a table
 * smaller than `splitBytes` stays whole, in the part where it starts. Two connections inserting
 * into the same table contend for its indexes' latches: the bench's 1.1 GB database (three big
 * tables) spent 19.0-19.7 s of server CPU loaded as two halves of every table, 16.1-17.6 s with
 * each table on one connection (myloader's files, this machine). Parts are in file order, so each
 * connection's pass over the file only moves forward.
 */
/** Tables whose rows more than one connection loads in the same phase. */
export function tablesInSeveralParts(parts: readonly (readonly RowPiece[])[]): Set<string> {
  const first = new Map<string, number>();
  const several = new Set<string>();
  parts.forEach((pieces, j) => {
    for (const piece of pieces) {
      const at = first.get(piece.seg.table);
      if (at === undefined) first.set(piece.seg.table, j);
      else if (at !== j) several.add(piece.seg.table);
    }
  });
  return several;
}

export function partitionRows(tables: readonly PhaseTable[], n: number, splitBytes: number): RowPiece[][] {
  const parts: RowPiece[][] = Array.from({ length: Math.max(1, n) }, () => []);
  const total = tables.reduce((sum, t) => sum + t.seg.bytes, 0);
  const partOf = (before: number): number => (total === 0 ? 0 : Math.min(parts.length - 1, Math.floor((before * parts.length) / total)));
  let before = 0;
  for (const t of tables) {
    const whole = parts.length === 1 || t.seg.bytes < splitBytes || t.seg.blocks.length < 2;
    let current: { j: number; blocks: (readonly [number, number])[] } | undefined;
    const flush = (): void => {
      if (current?.blocks.length) parts[current.j]!.push({ ...t, blocks: current.blocks });
    };
    const first = partOf(before);
    for (const block of t.seg.blocks) {
      const j = whole ? first : partOf(before);
      if (current?.j !== j) {
        flush();
        current = { j, blocks: [] };
      }
      current.blocks.push(block);
      before += block[1] - block[0];
    }
    flush();
  }
  return parts;
}

/** `/*!40000 ALTER TABLE `t` ENABLE KEYS *\/;`: for MyISAM it builds the indexes, after the rows. */
const ENABLE_KEYS = /^\/\*!40000 ALTER TABLE `(?:[^`]|``)+` ENABLE KEYS \*\/;$/;

/**
 * The DDL between two tables' rows, when it may run before the rows above it have loaded: the
 * next table's DROP/CREATE (and DISABLE KEYS), with the ENABLE KEYS of the table above kept for
 * after its rows (`later`). Not when it holds a trigger (it must not fire on the dumped rows), a
 * DELIMITER block (routines, events), a statement that writes rows, or the restoring of the
 * session's settings (the trailer): those wait for every row before them.
 */
export function earlySql(text: Buffer): { readonly now: Buffer; readonly later: Buffer[] } | undefined {
  const s = text.toString('latin1'); // byte for byte
  // A statement that writes rows starts its line (mariadb-dump's layout); inside a CREATE TABLE,
  // `ON UPDATE CURRENT_TIMESTAMP` and `ON DELETE CASCADE` are not statements.
  // LOCK TABLES would hold the coordinator to one table while ENABLE KEYS of another waits.
  if (/^DELIMITER\b|\bTRIGGER\b|@OLD_|^LOCK TABLES\b|system_versioning|^(?:\/\*!\d+\s*)?(INSERT|UPDATE|DELETE|REPLACE|LOAD|CALL)\b/im.test(s)) return undefined;
  const now: string[] = [];
  const later: Buffer[] = [];
  for (const line of s.split('\n')) {
    if (ENABLE_KEYS.test(line)) later.push(Buffer.from(`${line}\n`, 'latin1'));
    else now.push(line);
  }
  return { now: Buffer.from(now.join('\n'), 'latin1'), later };
}

/**
 * Bytes [start, end) of one pass over the stream, asked for in increasing order. What read()
 * returns is valid until the next read(): a view of the reader's chunk, or of one buffer used
 * again for every range that spans chunks (no Buffer per range: see reused-reader.ts for why).
 */
class RangeReader {
  private chunk: Buffer = Buffer.alloc(0);
  private chunkStart = 0;
  private spare: Buffer = Buffer.alloc(0);

  constructor(private readonly source: ChunkReader) {}

  close(): void {
    this.source.close();
  }

  async read(start: number, end: number): Promise<Buffer> {
    const length = end - start;
    let out: Buffer | undefined;
    let filled = 0;
    let at = start;
    while (at < end) {
      const chunkEnd = this.chunkStart + this.chunk.length;
      if (at >= chunkEnd) {
        const next = await this.source.next();
        if (!next) throw new TruncatedDumpError(`the file ended at byte ${chunkEnd}, before byte ${end} of the first pass`);
        this.chunkStart = chunkEnd;
        this.chunk = next;
        continue;
      }
      if (at < this.chunkStart) throw new Error(`range reader: byte ${at} was asked for after ${this.chunkStart}`);
      const from = at - this.chunkStart;
      const to = Math.min(this.chunk.length, end - this.chunkStart);
      if (!out && to - from === length) return this.chunk.subarray(from, to);
      out ??= this.buffer(length);
      this.chunk.copy(out, filled, from, to);
      filled += to - from;
      at = this.chunkStart + to;
    }
    return out ? out.subarray(0, length) : Buffer.alloc(0);
  }

  /** The spare buffer, grown to `length`; a range past 64 MiB (one huge row) gets its own. */
  private buffer(length: number): Buffer {
    if (length > SPARE_MAX) return Buffer.allocUnsafe(length);
    if (this.spare.length < length) this.spare = Buffer.allocUnsafe(Math.min(SPARE_MAX, Math.max(length, 2 * this.spare.length)));
    return this.spare;
  }
}

const SPARE_MAX = 64 << 20;

/** One client process: writes with backpressure, and barriers echoed back on its stdout. */
class ClientSink implements RowSink {
  readonly whole = true;
  private seq = 0;
  private readonly waiting = new Map<string, () => void>();
  private readonly maxQueued = 16 << 20;
  private id: number | undefined;
  private collecting: { readonly end: string; readonly lines: string[]; readonly done: (lines: string[]) => void } | undefined;
  private readonly tag = `asb-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(
    private readonly child: StartedChild,
    private readonly progress: () => void = () => undefined,
  ) {
    child.stdin!.on('error', () => undefined); // its exit status says why
    let rest = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      const lines = (rest + d).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        if (this.collecting) {
          if (l === this.collecting.end) {
            this.collecting.done(this.collecting.lines);
            this.collecting = undefined;
          } else this.collecting.lines.push(l);
          continue;
        }
        if (l.startsWith(`${this.tag}-conn-`)) this.id = Number(l.slice(this.tag.length + 6));
        const done = this.waiting.get(l);
        if (done) {
          this.waiting.delete(l);
          done();
        }
      }
    });
    // Which connection it is, for the watchdog; before anything else it is given.
    child.stdin!.write(`SELECT CONCAT('${this.tag}-conn-', CONNECTION_ID());\n`);
  }

  connectionId(): number | undefined {
    return this.id;
  }

  takes(): boolean {
    return true;
  }

  /**
   * Queues up to maxQueued bytes without waiting, so one busy connection does not stall the
   * others. A copy: the stream writes later, and a range reader reuses its buffer.
   */
  async send(statement: Buffer): Promise<void> {
    this.child.stdin!.write(Buffer.from(statement), () => this.progress());
    while (this.child.stdin!.writableLength > this.maxQueued && !this.child.stdin!.destroyed) await new Promise<void>((r) => this.child.stdin!.once('drain', () => r()));
  }

  /** Resolves once the server has executed everything written so far on this connection. */
  async drain(): Promise<void> {
    const marker = `${this.tag}-barrier-${++this.seq}`;
    const seen = new Promise<void>((r) => this.waiting.set(marker, r));
    this.child.stdin!.write(`SELECT '${marker}';\n`);
    await seen;
  }

  /** The rows of one query (tab-separated columns), between two markers. */
  async ask(sql: string): Promise<string[][]> {
    const marker = `${this.tag}-ask-${++this.seq}`;
    const rows = new Promise<string[]>((resolve) => this.waiting.set(`${marker}-b`, () => (this.collecting = { end: `${marker}-e`, lines: [], done: resolve })));
    this.child.stdin!.write(`SELECT '${marker}-b';\n${sql};\nSELECT '${marker}-e';\n`);
    return (await rows).map((l) => l.split('\t'));
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    await this.child.ended;
  }

  destroy(): void {
    void this.child.terminate(1000);
  }
}
