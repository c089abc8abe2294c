import { describe, expect, it } from 'vitest';
import { SqlDumpIndexer, type DumpIndex } from '../../../../lib/kinds/mysql/load/dump-index.js';
import { decodeDumpMap, encodeDumpMap } from '../../../../lib/kinds/mysql/load/dump-map.js';
import { splitStatements } from '../../../../lib/kinds/mysql/load/lexer.js';
import { dumpMarkers } from '../../../helpers/mysql-fidelity.js';

// The map of a dump (load/dump-index.ts on load/lexer.ts) against a hostile corpus: tenant
// text holding every marker the loader looks for, in strings, comments and routine bodies. What
// must hold: the map's pieces put back together are the file (minus the LOCK/UNLOCK statements of
// table data spread over connections), rows are only what mariadb-dump wrote as rows, and any
// chunking of the stream gives the same map.

const MARKERS = dumpMarkers('t');

interface Piece {
  readonly text: Buffer | string;
  /** Left out of the map (a LOCK/UNLOCK TABLES of spread rows). */
  readonly dropped?: boolean;
  /** Rows of this table. */
  readonly rows?: string;
}

const HEADER = [
  '/*M!999999\\- enable the sandbox mode */ \n',
  '-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n\n',
  '/*!40101 SET NAMES utf8mb4 */;\n',
  "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n",
].join('');

/** One table's data as mariadb-dump writes it. */
function table(name: string, inserts: (string | Buffer)[]): Piece[] {
  const q = '`' + name.replace(/`/g, '``') + '`';
  return [
    { text: `--\n-- Table structure for table ${q}\n--\n\nDROP TABLE IF EXISTS ${q};\nCREATE TABLE ${q} (\n  \`id\` int(11) NOT NULL,\n  \`v\` longtext\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n\n--\n-- Dumping data for table ${q}\n--\n\n` },
    { text: `LOCK TABLES ${q} WRITE;\n`, dropped: true },
    { text: `/*!40000 ALTER TABLE ${q} DISABLE KEYS */;\n` },
    ...inserts.map((v) => ({ text: typeof v === 'string' ? `INSERT INTO ${q} VALUES ${v};\n` : Buffer.concat([Buffer.from(`INSERT INTO ${q} VALUES `), v, Buffer.from(';\n')]), rows: name })),
    { text: `/*!40000 ALTER TABLE ${q} ENABLE KEYS */;\n` },
    { text: 'UNLOCK TABLES;\n', dropped: true },
  ];
}

/** A procedure in a DELIMITER block, its body holding `body`, under `mode`. */
function routine(body: string, mode = 'STRICT_TRANS_TABLES'): Piece[] {
  return [
    { text: `/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = '${mode}' */ ;\nDELIMITER ;;\nCREATE DEFINER=\`root\`@\`localhost\` PROCEDURE \`p\`()\nBEGIN\n  -- a comment\n${body}\nEND ;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n` },
  ];
}

const TRAILER: Piece = { text: "/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2026-12-07 13:18:10\n" };

function build(pieces: Piece[]): { file: Buffer; kept: Buffer; rows: Map<string, Buffer[]> } {
  const all = [{ text: HEADER }, ...pieces, TRAILER].map((p) => ({ ...p, bytes: Buffer.isBuffer(p.text) ? p.text : Buffer.from(p.text) }));
  const rows = new Map<string, Buffer[]>();
  for (const p of all) if (p.rows) rows.set(p.rows, [...(rows.get(p.rows) ?? []), p.bytes]);
  return { file: Buffer.concat(all.map((p) => p.bytes)), kept: Buffer.concat(all.filter((p) => !p.dropped).map((p) => p.bytes)), rows };
}

function index(file: Buffer, chunk: number): DumpIndex {
  const indexer = new SqlDumpIndexer();
  const scratch = Buffer.alloc(chunk);
  for (let at = 0; at < file.length; at += chunk) {
    const n = file.copy(scratch, 0, at, Math.min(file.length, at + chunk));
    indexer.feed(scratch.subarray(0, n));
    scratch.fill(0x27); // a quote: what the indexer kept, it must have copied
  }
  return indexer.finish();
}

/** The map put back together: header, sql, and the rows read from the file. */
function reassemble(file: Buffer, ix: DumpIndex): Buffer {
  return Buffer.concat([...ix.header, ...ix.segments.flatMap((s) => (s.kind === 'sql' ? [s.text] : s.blocks.map(([a, b]) => file.subarray(a, b))))]);
}

function check(pieces: Piece[], expectSerial?: RegExp, sizes = [1, 2, 3, 7, 64, 1000, 65536]): DumpIndex {
  const { file, kept, rows } = build(pieces);
  const whole = index(file, file.length + 1);
  for (const size of sizes) expect(index(file, size), `chunks of ${size}`).toEqual(whole);
  expect(decodeDumpMap(encodeDumpMap(whole))).toEqual(whole);
  if (expectSerial) {
    expect(whole.serial).toMatch(expectSerial);
    return whole;
  }
  expect(whole.serial).toBeUndefined();
  expect(reassemble(file, whole).equals(kept)).toBe(true);
  // Spread rows: exactly the INSERT statements written as rows, each split back whole.
  const spread = whole.segments.filter((s) => s.kind === 'rows' && !s.serial);
  expect(new Set(spread.map((s) => (s.kind === 'rows' ? s.table : '')))).toEqual(new Set(rows.keys()));
  for (const [name, statements] of rows) {
    const got = spread.flatMap((s) => (s.kind === 'rows' && s.table === name ? s.blocks.flatMap(([a, b], k) => (s.multi?.includes(k) ? splitStatements(file.subarray(a, b), s.nbe === true) : [file.subarray(a, b)])) : []));
    expect(got.map((b) => b.toString('hex'))).toEqual(statements.map((b) => b.toString('hex')));
  }
  return whole;
}

describe('the dump map: statements from a real lexer (load/lexer.ts)', () => {
  it('every marker inside a routine body string, a comment and a row value stays text (24.3, 24.4, 23.1)', () => {
    const lines = MARKERS.join('\n');
    const ix = check([
      ...table('texts', [`(1,'${lines.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}')`, "(2,'a'),(3,'b')"]),
      ...routine(`  SELECT '${lines.replace(/'/g, "''")}' AS doc; # ${MARKERS[2]}\n  /* ${lines.replace(/\*\//g, '* /')} */\n  SELECT "${lines.replace(/"/g, '""')}";`),
      ...table('t', ["(1,'x')"]),
    ]);
    // The routine, with its comment and every marker line, is in the sql as it was written.
    const sql = Buffer.concat(ix.segments.flatMap((s) => (s.kind === 'sql' ? [s.text] : []))).toString();
    expect(sql).toContain('  -- a comment\n');
    expect(sql).toContain(`SELECT '${MARKERS.join('\n').replace(/'/g, "''")}' AS doc;`);
    expect(ix.finalDelimiter).toBe(';');
  });

  it('escaped quotes, doubled quotes, a backslash at the end of a string, multi-line strings, binary and invalid UTF-8', () => {
    check([
      ...table('esc', ["(1,'it\\'s'),(2,'it''s'),(3,'ends in a backslash\\\\'),(4,'\\\\'),(5,'\";\\n);\\n')", '(6,"dq \\" and "" ;")']),
      ...table('bin', [Buffer.concat([Buffer.from("(1,_binary '"), Buffer.from([0xff, 0xfe, 0x27, 0x27, 0x80, 0x5c, 0x5c, 0x3b, 0x0a]), Buffer.from("'),(2,0xFF27),(3,'\u00e9\u{1F600}')")])]),
      ...routine("  SELECT 'multi\nline;\n;;\nstring\\\\';\n  SELECT `we``ird;;`;"),
    ]);
  });

  it('a trigger or routine under NO_BACKSLASH_ESCAPES: a backslash ends nothing there, and escapes again after', () => {
    const ix = check([
      ...routine("  SELECT 'C:\\';\n  SELECT 'DELIMITER ;\nUNLOCK TABLES;\n';", 'NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES'),
      ...table('after', ["(1,'back\\'slash;')"]),
    ]);
    expect(ix.segments.some((s) => s.kind === 'rows' && s.table === 'after' && !s.nbe)).toBe(true);
  });

  it('rows in a NO_BACKSLASH_ESCAPES dump carry the mode, and split back whole', () => {
    const nbe: Piece = { text: "/*!40101 SET @OLD2=@@SQL_MODE, SQL_MODE='NO_BACKSLASH_ESCAPES' */;\n" };
    const ix = check([nbe, ...table('raw', ["(1,'a\\'),(2,'line\n);\n')", "(3,'x')"])]);
    expect(ix.segments.find((s) => s.kind === 'rows')).toMatchObject({ table: 'raw', nbe: true, statements: 2 });
  });

  it('a 16 MiB statement', () => {
    const big = `(1,'${'x'.repeat(16 << 20)}')`;
    // Streams come in chunks of 64 KiB and more (a one-byte chunk per feed is for small corpora).
    check([...table('big', [big, "(2,'after')"])], undefined, [65536, 1 << 20, (1 << 20) + 7]);
  });

  it("holds about one statement while a table's rows stream, not the table (a 1.1 GB table once took 766 MB)", () => {
    const statement = `(1,'${'r'.repeat(256 << 10)}')`;
    const { file } = build([...table('t', Array.from({ length: 200 }, () => statement)), ...table('u', [statement, statement])]);
    const indexer = new SqlDumpIndexer();
    let most = 0;
    for (let at = 0; at < file.length; at += 65536) {
      indexer.feed(file.subarray(at, Math.min(file.length, at + 65536)));
      most = Math.max(most, indexer.heldBytes);
    }
    const ix = indexer.finish();
    expect(ix.serial).toBeUndefined();
    expect(file.length).toBeGreaterThan(50 << 20);
    expect(most).toBeLessThan(2 * (256 << 10) + 65536);
  });

  it('a history table (its INSERTs name their columns) is sent verbatim in place, with its LOCK TABLES', () => {
    const q = '`sv`';
    const { file } = build([
      { text: `CREATE TABLE ${q} (id int) WITH SYSTEM VERSIONING;\n/*M!101100 SET @old_system_versioning_insert_history=@@session.system_versioning_insert_history, @@session.system_versioning_insert_history=1 */;\nLOCK TABLES ${q} WRITE;\n/*!40000 ALTER TABLE ${q} DISABLE KEYS */;\n` },
      { text: `INSERT INTO ${q} (\`id\`, row_start, row_end) VALUES (1,'2026-01-01','2038-01-19 03:14:07.999999');\n` },
      { text: `/*!40000 ALTER TABLE ${q} ENABLE KEYS */;\nUNLOCK TABLES;\n` },
    ]);
    const ix = index(file, 5);
    expect(ix.serial).toBeUndefined();
    expect(ix.segments.filter((s) => s.kind === 'rows')).toMatchObject([{ table: 'sv', serial: true, statements: 1 }]);
    expect(reassemble(file, ix).equals(file)).toBe(true);
  });

  it('what it cannot be sure of makes the whole file serial: a client command, an sql_mode it does not follow, a DELIMITER inside a statement, odd statements among rows', () => {
    check([...routine('  SELECT 1; \\G')], /backslash outside a string/);
    check([{ text: "/*!50003 SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES') */ ;\n" }], /sql_mode/);
    check([{ text: 'SELECT 1\nDELIMITER ;;\n;\n' }], /DELIMITER word inside a statement/);
    const odd = table('odd', ["(1,'a')"]);
    odd.splice(3, 0, { text: 'DELETE FROM `odd`;\n' });
    check(odd, /inside the data of table odd/);
    check([...routine('  SELECT `a\\`;')], /backslash inside a quoted identifier/);
  });

  it('a file cut inside an INSERT is truncated; cut inside a DELIMITER block it ends in that delimiter', () => {
    const { file } = build(table('t', ["(1,'a')"]));
    const cut = file.subarray(0, file.indexOf("'a')") + 2);
    expect(() => index(cut, 100)).toThrow(/truncated/);
    const inBlock = Buffer.from("CREATE TABLE t (id int);\nDELIMITER ;;\nCREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a = 1 ;;\n");
    expect(index(inBlock, 10).finalDelimiter).toBe(';;');
  });
});
