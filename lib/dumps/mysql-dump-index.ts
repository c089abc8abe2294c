/**
 * A map of one mariadb-dump file (one database, no --databases), read once as it streams by,
 * for the parallel loader (mysql-load.ts). mariadb-dump writes every extended INSERT one row per
 * line ("INSERT INTO `t` VALUES\n(…),\n(…);\n"; values escape their newlines), so the stream
 * splits into statements at line ends without parsing SQL, and an INSERT ends at the first ");\n".
 *
 * - the header: the session settings at the top (character set, UNIQUE_CHECKS=0,
 *   FOREIGN_KEY_CHECKS=0, sql_mode, time zone), which every connection runs;
 * - `sql` segments: everything else but the rows (DDL, DELIMITER blocks with triggers and
 *   routines, the trailer), kept in memory (a dump's schema is small next to its rows) and run in
 *   order on one connection; LOCK TABLES / UNLOCK TABLES are left out: they only speed up a
 *   one-connection load, and a WRITE lock on one connection would block the others;
 * - `rows` segments: where each INSERT statement of a table starts and ends (byte offsets of the
 *   uncompressed stream), so the loader can hand each connection a contiguous part of the rows,
 *   read from its own pass over the file, as myloader does with its per-chunk files.
 */
export interface SqlSegment {
  readonly kind: 'sql';
  readonly text: Buffer;
}

export interface RowsSegment {
  readonly kind: 'rows';
  readonly table: string;
  /**
   * [start, end) offsets of runs of whole INSERT statements, in order, each ≥ 64 KiB (or ending
   * in a statement that does not end with ");\n"): a table of 10 million one-row INSERTs is not
   * 10 million entries in memory. A run splits into statements at its ");\n"s.
   */
  readonly blocks: readonly (readonly [number, number])[];
  readonly bytes: number;
  readonly statements: number;
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
}

export class TruncatedDumpError extends Error {}

const INSERT = Buffer.from('INSERT INTO `');
const END = Buffer.from(');\n');
const SEMI_END = Buffer.from(';\n');
const BLOCK = 64 << 10;

/** `source`'s chunks need to stay valid only until the next one (nothing here keeps a view of one). */
export async function indexSqlDump(source: AsyncIterable<Buffer>): Promise<DumpIndex> {
  const indexer = new SqlDumpIndexer();
  for await (const chunk of source) indexer.feed(chunk);
  return indexer.finish();
}

/**
 * The same map, fed chunk by chunk as a dump streams by (the dump's streaming check feeds it:
 * the map is written beside the dump at dump time, see mysql-dump-map.ts). A chunk needs to stay
 * valid only during feed(): what is kept is copied.
 */
export class SqlDumpIndexer {
  private readonly header: Buffer[] = [];
  private readonly segments: DumpSegment[] = [];
  private sql: Buffer[] = [];
  private rows: { table: string; blocks: [number, number][]; bytes: number; statements: number; open: boolean } | undefined;
  private inserts = 0;
  private prelude = true;
  private delimiter = ';';
  private inStatement = false; // a multi-line DDL statement (CREATE TABLE, a trigger body) is open
  private base = 0; // offset of the current chunk in the stream
  private inInsert = false;
  private insertStart = 0;
  private firstLine: Buffer = Buffer.alloc(0); // the INSERT's first line, for its table name
  private parts: Buffer[] = []; // a line split across chunks
  private partsStart = 0;
  private carry: Buffer = Buffer.alloc(0); // the statement's last 2 bytes, for an end split across chunks

  feed(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.inInsert) {
        let end = -1;
        if (pos === 0 && this.carry.length) {
          const joint = Buffer.concat([this.carry, chunk.subarray(0, 2)]);
          const at = joint.indexOf(END);
          if (at !== -1) end = at + 3 - this.carry.length;
        }
        if (end === -1) {
          const at = chunk.indexOf(END, pos);
          if (at !== -1) end = at + 3;
        }
        if (end === -1) {
          // A copy: the chunk may be a reader's buffer, refilled by the next read.
          this.carry = Buffer.from(chunk.length - pos >= 2 ? chunk.subarray(-2) : Buffer.concat([this.carry, chunk.subarray(pos)]).subarray(-2));
          break;
        }
        this.addInsert(this.firstLine, this.insertStart, this.base + end, END);
        pos = end;
        this.inInsert = false;
        continue;
      }
      const nl = chunk.indexOf(10, pos);
      if (nl === -1) {
        if (!this.parts.length) this.partsStart = this.base + pos;
        this.parts.push(Buffer.from(chunk.subarray(pos))); // a copy: the chunk is not ours to keep
        break;
      }
      const lineStart = this.parts.length ? this.partsStart : this.base + pos;
      const line = this.parts.length ? Buffer.concat([...this.parts, chunk.subarray(pos, nl + 1)]) : Buffer.from(chunk.subarray(pos, nl + 1));
      this.parts = [];
      pos = nl + 1;
      if (this.onLine(line)) {
        if (line.subarray(-3).equals(END) || line.subarray(-2).equals(SEMI_END)) this.addInsert(line, lineStart, lineStart + line.length, line.subarray(-3));
        else {
          this.inInsert = true;
          this.insertStart = lineStart;
          this.firstLine = line.subarray(0, 512);
          this.carry = line.subarray(-2);
        }
      }
    }
    this.base += chunk.length;
  }

  /** The map of everything fed; throws TruncatedDumpError when the stream ended inside an INSERT. */
  finish(): DumpIndex {
    if (this.inInsert) throw new TruncatedDumpError('the file ends inside an INSERT statement (truncated)');
    if (this.parts.length) this.onLine(Buffer.concat(this.parts));
    this.parts = [];
    this.closeRows();
    this.closeSql();
    return { header: this.header, segments: this.segments, bytes: this.base, inserts: this.inserts, finalDelimiter: this.delimiter };
  }

  private closeRows(): void {
    const rows = this.rows;
    if (rows) this.segments.push({ kind: 'rows', table: rows.table, blocks: rows.blocks, bytes: rows.bytes, statements: rows.statements });
    this.rows = undefined;
  }

  private closeSql(): void {
    if (this.sql.length) this.segments.push({ kind: 'sql', text: Buffer.concat(this.sql) });
    this.sql = [];
  }

  private addInsert(line: Buffer, start: number, end: number, tail: Buffer): void {
    const table = tableOf(line);
    if (!this.rows || this.rows.table !== table) {
      this.closeSql();
      this.closeRows();
      this.rows = { table, blocks: [], bytes: 0, statements: 0, open: false };
    }
    const rows = this.rows;
    const run = rows.blocks.at(-1);
    if (run && rows.open && run[1] === start && run[1] - run[0] < BLOCK) run[1] = end;
    else rows.blocks.push([start, end]);
    // A run is cut at ");\n"s later: one that ends otherwise closes its run.
    rows.open = tail.equals(END);
    rows.bytes += end - start;
    rows.statements++;
    this.inserts++;
  }

  /** Every line outside INSERT statements; true when the line starts an INSERT. */
  private onLine(line: Buffer): boolean {
    const text = line.subarray(0, 256).toString('utf8');
    if (this.prelude) {
      if (text === '\n' || text.startsWith('--') || text.startsWith('/*!') || text.startsWith('/*M!')) {
        this.header.push(line);
        return false;
      }
      this.prelude = false;
    }
    if (!this.inStatement && this.delimiter === ';' && line.subarray(0, INSERT.length).equals(INSERT)) return true;
    if (!this.inStatement && /^(LOCK TABLES `.*` WRITE|UNLOCK TABLES);\n?$/.test(text)) return false;
    if (this.rows) this.closeRows();
    const d = /^DELIMITER (\S+)/.exec(text);
    if (d) this.delimiter = d[1]!;
    else if (text.trim() !== '' && !(text.startsWith('--') && !this.inStatement)) this.inStatement = !line.toString('utf8').trimEnd().endsWith(this.delimiter);
    this.sql.push(line);
    return false;
  }
}

/** `t` of "INSERT INTO `t` VALUES" (a backtick inside the name is doubled). */
function tableOf(line: Buffer): string {
  const m = /^INSERT INTO `((?:[^`]|``)*)`/.exec(line.subarray(0, 512).toString('utf8'));
  return m ? m[1]!.replace(/``/g, '`') : '';
}
