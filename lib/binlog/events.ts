/**
 * Transactions read from `mariadb-binlog -v --base64-output=DECODE-ROWS` output (the server's own
 * decoder: we parse its comments, not the binlog format). One transaction starts at a GTID event;
 * its row events name their tables (`### INSERT INTO \`db\`.\`t\``, `# Number of rows: N`), its
 * Query events their statement and the default database in force (`use \`db\``, printed only
 * when it changes, so it carries over from one event to the next within one run of the tool).
 */
import { mysqlIdent } from '../kinds/mysql/index.js';
export interface Statement {
  /** The default database the statement ran in ('' when none). */
  readonly db: string;
  readonly text: string;
}

export interface Transaction {
  readonly file: string;
  /** Offset of its GTID event (what --before-event takes). */
  readonly position: number;
  /** Seconds since the epoch, from the event header (the server's clock, to the second). */
  readonly time: number;
  readonly gtid?: string;
  /** Row changes per `db.table` and kind. */
  readonly rows: { readonly db: string; readonly table: string; readonly kind: 'INSERT' | 'UPDATE' | 'DELETE'; count: number }[];
  readonly statements: Statement[];
}

const HEADER = /^#(\d\d)(\d\d)(\d\d) +(\d+):(\d\d):(\d\d) server id \d+ +end_log_pos \d+.*?\t(\S+)(?:[ \t](.*))?$/;
const AT = /^# at (\d+)$/;
const USE = /^use `((?:[^`]|``)*)`\/\*!\*\/;$/;
const ROW = /^### (INSERT INTO|UPDATE|DELETE FROM) `((?:[^`]|``)*)`\.`((?:[^`]|``)*)`$/;
const NROWS = /^# Number of rows: (\d+)$/;

/** Parses the tool's output of one binlog file, line by line, into transactions. */
export class EventReader {
  readonly transactions: Transaction[] = [];
  private at = 0;
  private db = '';
  private current: Transaction | undefined;
  private query: { db: string; lines: string[] } | undefined;
  private lastRow: Transaction['rows'][number] | undefined;
  private carry = '';

  constructor(private readonly file: string) {}

  feed(text: string): void {
    const lines = (this.carry + text).split('\n');
    this.carry = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  end(): Transaction[] {
    if (this.carry) this.line(this.carry);
    this.carry = '';
    this.closeQuery();
    return this.transactions;
  }

  private line(line: string): void {
    let m = AT.exec(line);
    if (m) {
      this.closeQuery();
      this.at = Number(m[1]);
      return;
    }
    m = HEADER.exec(line);
    if (m) {
      this.closeQuery();
      const time = Date.UTC(2000 + Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) / 1000;
      const type = m[7]!;
      if (type === 'GTID') {
        this.current = { file: this.file, position: this.at, time, gtid: m[8]?.split(' ')[0], rows: [], statements: [] };
        this.transactions.push(this.current);
      } else if (type === 'Query' && this.current) {
        this.query = { db: this.db, lines: [] };
      }
      return;
    }
    if (this.query) {
      const u = USE.exec(line);
      if (u) {
        this.db = this.query.db = u[1]!.replace(/``/g, '`');
        return;
      }
      if (/^SET /.test(line) || /^\/\*/.test(line) || line === 'DELIMITER ;' || /^DELIMITER /.test(line)) return;
      this.query.lines.push(line);
      return;
    }
    m = ROW.exec(line);
    if (m && this.current) {
      const kind = m[1] === 'INSERT INTO' ? 'INSERT' : m[1] === 'UPDATE' ? 'UPDATE' : 'DELETE';
      const db = m[2]!.replace(/``/g, '`');
      const table = m[3]!.replace(/``/g, '`');
      let row = this.current.rows.find((r) => r.db === db && r.table === table && r.kind === kind);
      if (!row) this.current.rows.push((row = { db, table, kind, count: 0 }));
      // Counted from `# Number of rows` after the event; one line per row otherwise.
      this.lastRow = row;
      return;
    }
    m = NROWS.exec(line);
    if (m && this.lastRow) {
      this.lastRow.count += Number(m[1]);
      this.lastRow = undefined;
    }
  }

  /** A Query event's statement, without the tool's `/*!*\/;` terminator. */
  private closeQuery(): void {
    const q = this.query;
    this.query = undefined;
    if (!q || !this.current) return;
    const text = q.lines.join('\n').replace(/\/\*!\*\/;\s*$/, '').trim();
    if (!text || /^(BEGIN|COMMIT|ROLLBACK|START TRANSACTION)\b/i.test(text) || /^XA /i.test(text)) return;
    this.current.statements.push({ db: q.db, text });
  }
}

function quotedMention(text: string, name: string): boolean {
  if (text.includes(mysqlIdent(name))) return true;
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w$\`])${esc}\\s*\\.`, 'i').test(text);
}

/** Whether a transaction changes `db` (its rows, or a statement run in it or naming it). */
export function touches(t: Transaction, db: string): boolean {
  return t.rows.some((r) => r.db === db) || t.statements.some((s) => s.db === db || quotedMention(s.text, db));
}

/**
 * Statements `mariadb-binlog --database=db` would get wrong: run from another default database
 * but naming `db` (the filter follows the default database, so they would be left out), or,
 * replayed under another name (--into), naming `db` itself (they would change the original).
 */
export function unsafeFor(t: Transaction, db: string, into: string): Statement | undefined {
  return t.statements.find((s) => (s.db !== db && quotedMention(s.text, db)) || (s.db === db && into !== db && quotedMention(s.text, db)));
}

/** One line per transaction for `binlog events` and the dry run. */
export function describeTransaction(t: Transaction, db: string, when: (sec: number) => string): string {
  const parts: string[] = [];
  for (const r of t.rows.filter((r) => r.db === db)) parts.push(`${r.kind} ${r.table} ${r.count} row(s)`);
  for (const s of t.statements.filter((s) => s.db === db || quotedMention(s.text, db))) parts.push(s.text.replace(/\s+/g, ' ').slice(0, 120));
  const others = new Set(t.rows.filter((r) => r.db !== db).map((r) => r.db));
  return `${when(t.time)}  ${t.file}:${t.position}${t.gtid ? `  gtid ${t.gtid}` : ''}  ${parts.join('; ')}${others.size ? `  (also changes ${[...others].join(', ')})` : ''}`;
}
