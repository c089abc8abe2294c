import { mysqlIdent } from '../sql.js';
import { codeOf, DumpLexer, type LexedStatement } from './lexer.js';

/**
 * A map of one mariadb-dump file (one database, no --databases), read once as it streams by,
 * for the parallel loader (load/parallel.ts). Statements are found by a real lexer
 * (lexer.ts: quotes, escapes, comments, DELIMITER), never by lines: a routine body or
 * a row value holding lines like `DELIMITER ;`, `UNLOCK TABLES;` or `INSERT INTO …` is text
 * inside its statement.
 *
 * - the header: the session settings at the top (character set, UNIQUE_CHECKS=0,
 *   FOREIGN_KEY_CHECKS=0, sql_mode, time zone), which every connection runs;
 * - `sql` segments: everything else but the rows (DDL, DELIMITER blocks with triggers and
 *   routines, the trailer), byte for byte, kept in memory and run in order on one connection;
 * - `rows` segments: the INSERT statements of one table's data as mariadb-dump writes it
 *   (`LOCK TABLES \`t\` WRITE;`, DISABLE KEYS, `INSERT INTO \`t\` VALUES …;`…, ENABLE KEYS,
 *   `UNLOCK TABLES;`, each at the top level): where they start and end (byte offsets of the
 *   uncompressed stream), so the loader can hand each connection a contiguous part of them.
 *   Their LOCK TABLES / UNLOCK TABLES are left out: they only speed up a one-connection load, and
 *   a WRITE lock on one connection would block the others. Any other INSERT at the top level
 *   (a system-versioned table's history with its column list, a hand-written file) is a `serial`
 *   rows segment: sent verbatim, in order, by the one connection that runs the sql.
 *
 * When the lexer cannot be sure it reads the file as the client does (`serial` on the index),
 * the loader sends the whole file through one client instead.
 */
export interface SqlSegment {
  readonly kind: 'sql';
  readonly text: Buffer;
}

export interface RowsSegment {
  readonly kind: 'rows';
  readonly table: string;
  /**
   * [start, end) offsets of runs of whole INSERT statements, in order, each ≥ 64 KiB where the
   * statements follow each other: a table of 10 million one-row INSERTs is not 10 million entries
   * in memory. A run splits into statements with the lexer (splitStatements).
   */
  readonly blocks: readonly (readonly [number, number])[];
  readonly bytes: number;
  readonly statements: number;
  /** Sent verbatim by the connection that runs the sql, in its place (not spread over others). */
  readonly serial?: boolean;
  /** The session's sql_mode had NO_BACKSLASH_ESCAPES where these statements are. */
  readonly nbe?: boolean;
  /** Indexes of the blocks that hold more than one statement (the others are one each). */
  readonly multi?: readonly number[];
}

export type DumpSegment = SqlSegment | RowsSegment;

export interface DumpIndex {
  /** The header's lines, one statement or comment each. */
  readonly header: readonly Buffer[];
  readonly segments: readonly DumpSegment[];
  readonly bytes: number;
  readonly inserts: number;
  /** The DELIMITER at the end: not ';' when the file was cut inside a DELIMITER block. */
  readonly finalDelimiter: string;
  /** Why the file must go through one client as it is (the lexer is not sure of its statements). */
  readonly serial?: string;
}

export class TruncatedDumpError extends Error {}

const BLOCK = 64 << 10;
/** The first line of mariadb-dump ≥ 10.5.25 / 10.11.8: a client command (sandbox mode), not SQL. */
const SANDBOX = /^\/\*M!999999\\- enable the sandbox mode \*\/ *\n/;

/** `source`'s chunks need to stay valid only until the next one (nothing here keeps a view of one). */
export async function indexSqlDump(source: AsyncIterable<Buffer>): Promise<DumpIndex> {
  const indexer = new SqlDumpIndexer();
  for await (const chunk of source) indexer.feed(chunk);
  return indexer.finish();
}

interface OpenRows {
  table: string;
  blocks: [number, number][];
  bytes: number;
  statements: number;
  serial: boolean;
  nbe: boolean;
  multi: number[];
}

/** Table data between LOCK TABLES and UNLOCK TABLES, before its first INSERT decided its kind. */
interface Block {
  readonly table: string;
  readonly lockStart: number;
  readonly lockEnd: number;
  mode: 'pending' | 'parallel' | 'serial';
}

/** What the indexer reads of a lexer (lexer.ts DumpLexer). */
export interface StatementLexer {
  readonly delimiter: string;
  readonly nbe: boolean;
  readonly uncertain: string | undefined;
  lex(buf: Buffer, base: number, from: number, last: boolean): number;
  end(base: number): void;
}

/**
 * The same map, fed chunk by chunk as a dump streams by (the dump's streaming check feeds it:
 * the map is written beside the dump at dump time, see load/dump-map.ts). A chunk needs to stay
 * valid only during feed(): what is kept is copied.
 */
export class SqlDumpIndexer {
  private header: Buffer[] = [];
  private headerEnd = -1; // -1 while the header goes on
  private readonly segments: DumpSegment[] = [];
  private sql: Buffer[] = [];
  private rows: OpenRows | undefined;
  private block: Block | undefined;
  private inserts = 0;
  private uncertain: string | undefined;
  private readonly lexer: StatementLexer;
  /** Bytes not lexed yet (the lexer needed more after them). */
  private carry: Buffer = Buffer.alloc(0);
  private carryAt = 0;
  /** Bytes from `heldAt` on, kept until they are sql or known to be rows. */
  private held: Buffer[] = [];
  private heldAt = 0;
  private heldEnd = 0;
  /** Everything before it is in the header, the sql or a rows segment. */
  private cursor = 0;
  private started = false;

  /** `lexer`: the differential test gives a reference lexer to compare maps with. */
  constructor(lexer: (onStatement: (s: LexedStatement) => void) => StatementLexer = (on) => new DumpLexer(on)) {
    this.lexer = lexer((s) => this.onStatement(s));
  }

  feed(chunk: Buffer): void {
    if (!chunk.length) return;
    if (!this.started) {
      // The first line decides the sandbox command: wait for enough of it.
      this.carry = Buffer.concat([this.carry, chunk]);
      if (this.carry.length >= 64) this.begin();
      return;
    }
    this.lexFrom(this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk, false);
  }

  /** The first bytes: a sandbox line goes to the header as it is (the client reads it, not the server). */
  private begin(): void {
    this.started = true;
    let data = this.carry;
    this.carry = Buffer.alloc(0);
    const m = SANDBOX.exec(data.subarray(0, 64).toString('latin1'));
    if (m) {
      this.header.push(Buffer.from(data.subarray(0, m[0].length)));
      this.cursor = this.heldAt = this.heldEnd = this.carryAt = m[0].length;
      data = data.subarray(m[0].length);
    }
    this.lexFrom(data, false);
  }

  /** Lexes `data` (stream offset carryAt), holding its new bytes; keeps what the lexer left. */
  private lexFrom(data: Buffer, last: boolean): void {
    const at = this.carryAt;
    const fresh = Math.max(0, this.heldEnd - at);
    // The new bytes are held as a view while the lexer runs; afterwards only what is still
    // needed of them is copied (rows that streamed by whole are not: most of a dump).
    let view: Buffer | undefined;
    if (fresh < data.length) {
      view = data.subarray(fresh);
      this.held.push(view);
      this.heldEnd = at + data.length;
    }
    const stop = this.lexer.lex(data, at, 0, last);
    this.carry = last ? Buffer.alloc(0) : copyOf(data.subarray(stop));
    this.carryAt = at + stop;
    this.release();
    const k = this.held.length - 1;
    if (view && this.held[k] === view) {
      // Its head before what is needed is dropped too when it is the first piece held.
      const cut = k === 0 ? Math.max(0, Math.min(view.length, this.needed() - this.heldAt)) : 0;
      this.held[k] = copyOf(view.subarray(cut));
      this.heldAt += cut;
    }
  }

  /** The map of everything fed; throws TruncatedDumpError when the stream ended inside an INSERT. */
  finish(): DumpIndex {
    if (!this.started) this.begin();
    if (this.carry.length) this.lexFrom(this.carry, true);
    const total = this.heldEnd;
    this.truncatedInsert = false;
    this.lexer.end(total);
    if (this.truncatedInsert) throw new TruncatedDumpError('the file ends inside an INSERT statement (truncated)');
    if (this.block && this.block.mode !== 'serial') this.doubt('the file ends inside table data (no UNLOCK TABLES)');
    this.closeHeader(total);
    this.toSql(total);
    this.closeRows();
    this.closeSql();
    const serial = this.uncertain ?? this.lexer.uncertain;
    return { header: this.header, segments: this.segments, bytes: total, inserts: this.inserts, finalDelimiter: this.lexer.delimiter, ...(serial ? { serial } : {}) };
  }

  private truncatedInsert = false;

  private doubt(why: string): void {
    this.uncertain ??= why;
  }

  /** Bytes [from, to) of the stream, from the held bytes. */
  private take(from: number, to: number): Buffer {
    const out: Buffer[] = [];
    let at = this.heldAt;
    for (const piece of this.held) {
      const end = at + piece.length;
      if (end > from && at < to) out.push(piece.subarray(Math.max(0, from - at), Math.min(piece.length, to - at)));
      at = end;
      if (at >= to) break;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Bytes held for statements not placed yet: stays at about one statement while rows stream. */
  get heldBytes(): number {
    return this.heldEnd - this.heldAt;
  }

  /**
   * Drops held bytes before what may still be needed: the cursor, and a pending block's LOCK
   * (until its first INSERT says whether the LOCK is left out or runs as it is; after that the
   * LOCK is placed, and holding from it kept a whole table's rows in memory).
   */
  private release(): void {
    const keep = this.needed();
    let drop = 0;
    while (drop < this.held.length && this.heldAt + this.held[drop]!.length <= keep) this.heldAt += this.held[drop++]!.length;
    // One splice, not a shift per piece: small chunks make thousands of pieces of one statement.
    if (drop) this.held.splice(0, drop);
  }

  /** The first byte of the stream that may still be taken. */
  private needed(): number {
    return Math.min(this.cursor, this.block?.mode === 'pending' ? this.block.lockStart : Infinity);
  }

  private closeHeader(upTo: number): void {
    if (this.headerEnd !== -1) return;
    this.headerEnd = upTo;
    const text = this.take(this.cursor, upTo);
    // One line each: a protocol connection runs the session settings among them.
    let from = 0;
    while (from < text.length) {
      const nl = text.indexOf(10, from);
      const to = nl === -1 ? text.length : nl + 1;
      this.header.push(Buffer.from(text.subarray(from, to)));
      from = to;
    }
    this.cursor = upTo;
  }

  private toSql(upTo: number): void {
    if (upTo <= this.cursor) return;
    if (this.rows) this.closeRows();
    this.sql.push(Buffer.from(this.take(this.cursor, upTo)));
    this.cursor = upTo;
  }

  private closeRows(): void {
    const rows = this.rows;
    if (rows) this.segments.push({ kind: 'rows', table: rows.table, blocks: rows.blocks, bytes: rows.bytes, statements: rows.statements, ...(rows.serial ? { serial: true } : {}), ...(rows.nbe ? { nbe: true } : {}), ...(rows.multi.length ? { multi: rows.multi } : {}) });
    this.rows = undefined;
  }

  private closeSql(): void {
    if (this.sql.length) this.segments.push({ kind: 'sql', text: Buffer.concat(this.sql) });
    this.sql = [];
  }

  private addInsert(table: string, start: number, end: number, serial: boolean): void {
    if (start > this.cursor) this.toSql(start);
    if (!this.rows || this.rows.table !== table || this.rows.serial !== serial || this.rows.nbe !== this.lexer.nbe) {
      this.closeRows();
      this.closeSql();
      this.rows = { table, blocks: [], bytes: 0, statements: 0, serial, nbe: this.lexer.nbe, multi: [] };
    }
    const rows = this.rows;
    const run = rows.blocks.at(-1);
    // Small statements that follow each other share a block; a big one (mariadb-dump's extended
    // INSERTs) is a block of its own, sent as it is without splitting it again.
    if (run && run[1] === start && run[1] - run[0] < BLOCK && end - start < BLOCK) {
      run[1] = end;
      if (rows.multi.at(-1) !== rows.blocks.length - 1) rows.multi.push(rows.blocks.length - 1);
    } else rows.blocks.push([start, end]);
    rows.bytes += end - start;
    rows.statements++;
    this.inserts++;
    this.cursor = end;
  }

  private onStatement(s: LexedStatement): void {
    const code = codeOf(s.prefix);
    const text = code.toString('latin1');
    if (this.headerEnd === -1) {
      // The header: single-line /*!…*/ settings (and comments) before the first other statement.
      if (!s.command && /^\/\*M?!\d+ [^\n]*\*\/\s*;\s*$/.test(text) && s.delimiter === ';') return;
      this.closeHeader(s.start);
    }
    if (s.delimiter === '' && /^INSERT\b/i.test(text)) {
      this.truncatedInsert = true;
      return;
    }
    const codeStart = s.start + (s.prefix.length - code.length);
    const top = !s.command && s.delimiter === ';';
    const block = this.block;
    if (block) {
      const table = mysqlIdent(block.table);
      if (top && text.startsWith(`INSERT INTO ${table} `) && codeStart === s.start) {
        if (block.mode === 'pending') {
          block.mode = /^INSERT INTO `(?:[^`]|``)+` VALUES[ \n]/.test(text) ? 'parallel' : 'serial';
          // Parallel: the LOCK statement is left out; serial: it runs as it is, before the rows.
          if (block.mode === 'parallel') {
            this.toSql(block.lockStart);
            this.cursor = block.lockEnd;
          }
        } else if (block.mode === 'parallel' && !/^INSERT INTO `(?:[^`]|``)+` VALUES[ \n]/.test(text)) this.doubt(`INSERTs of two forms in the data of table ${block.table}`);
        this.addInsert(block.table, s.start, s.end, block.mode === 'serial');
        return;
      }
      const keys = top ? /^\/\*!40000 ALTER TABLE (`(?:[^`]|``)+`) (DISABLE|ENABLE) KEYS \*\/;\s*$/.exec(text) : null;
      // DISABLE KEYS before the rows, ENABLE KEYS after them (or with none: an empty table).
      if (keys && keys[1] === table && (keys[2] === 'ENABLE' || block.mode === 'pending')) return;
      if (top && /^UNLOCK TABLES;\s*$/.test(text)) {
        if (block.mode === 'pending') {
          // No rows: the LOCK and UNLOCK statements are left out all the same.
          this.toSql(block.lockStart);
          this.cursor = block.lockEnd;
        }
        if (block.mode !== 'serial') {
          this.toSql(codeStart);
          this.cursor = s.end;
        }
        this.block = undefined;
        return;
      }
      if (block.mode !== 'serial') this.doubt(`a statement inside the data of table ${block.table} that mariadb-dump does not write there: ${JSON.stringify(text.slice(0, 60))}`);
      return;
    }
    const lock = top ? /^LOCK TABLES `((?:[^`]|``)+)` WRITE;\s*$/.exec(text) : null;
    if (lock) {
      this.toSql(codeStart);
      this.block = { table: lock[1]!.replace(/``/g, '`'), lockStart: codeStart, lockEnd: s.end, mode: 'pending' };
      return;
    }
    // Any other INSERT at the top level: verbatim from the file, in its place.
    if (top && /^INSERT\b/i.test(text) && codeStart === s.start) {
      this.addInsert(tableOf(code), s.start, s.end, true);
      return;
    }
    // Everything else is sql: it is taken from the held bytes when the next rows start, or at the end.
  }
}


/** A copy of `b` (its memory is not zeroed first, as Buffer.from's is for large ones). */
function copyOf(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  b.copy(out);
  return out;
}

/** `t` of "INSERT INTO `t` VALUES" (a backtick inside the name is doubled). */
function tableOf(line: Buffer): string {
  const m = /^INSERT INTO `((?:[^`]|``)*)`/.exec(line.subarray(0, 512).toString('utf8'));
  return m ? m[1]!.replace(/``/g, '`') : '';
}
