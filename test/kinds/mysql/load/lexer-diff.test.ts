import { describe, expect, it } from 'vitest';
import { SqlDumpIndexer, TruncatedDumpError, type StatementLexer } from '../../../../lib/kinds/mysql/load/dump-index.js';
import { encodeDumpMap } from '../../../../lib/kinds/mysql/load/dump-map.js';
import { DumpLexer, type LexedStatement } from '../../../../lib/kinds/mysql/load/lexer.js';
import { dumpMarkers } from '../../../helpers/mysql-fidelity.js';
import { ReferenceLexer } from './reference-lexer.js';
import { mulberry32 } from '../../../../scripts/bench/generate.js';

// The lexer's fast paths (indexOf through strings, runs of code bytes skipped in one loop) against
// a byte-by-byte reference (reference-lexer.ts): the same statements, the same session state at
// each, the same map, for hostile corpora cut into chunks of every size, and for random ones.

type Factory = (on: (s: LexedStatement) => void) => StatementLexer;

interface Outcome {
  /** Every statement as the indexer saw it, with the lexer's state at that moment. */
  readonly statements: string[];
  /** The map, encoded (or the error that ended it). */
  readonly map: string;
}

function outcome(file: Buffer, make: Factory, sizes: () => number): Outcome {
  const statements: string[] = [];
  let lexer: StatementLexer | undefined;
  const indexer = new SqlDumpIndexer((on) => {
    lexer = make((s) => {
      statements.push(JSON.stringify({ start: s.start, end: s.end, delimiter: s.delimiter, command: s.command ?? false, prefix: s.prefix.toString('hex'), nbe: lexer!.nbe, uncertain: lexer!.uncertain ?? null }));
      on(s);
    });
    return lexer;
  });
  let at = 0;
  let scratch = Buffer.alloc(0);
  while (at < file.length) {
    const size = Math.min(sizes(), file.length - at);
    if (scratch.length < size) scratch = Buffer.alloc(size);
    file.copy(scratch, 0, at, at + size);
    indexer.feed(scratch.subarray(0, size));
    scratch.fill(0x27); // a quote: what the indexer kept, it must have copied
    at += size;
  }
  try {
    return { statements, map: encodeDumpMap(indexer.finish()).toString('utf8') };
  } catch (err) {
    if (!(err instanceof TruncatedDumpError)) throw err;
    return { statements, map: `truncated: ${err.message}` };
  }
}

const fast: Factory = (on) => new DumpLexer(on);
const reference: Factory = (on) => new ReferenceLexer(on);

function same(file: Buffer, sizes: (() => number)[], label: string): Outcome {
  const want = outcome(file, reference, () => file.length + 1);
  for (const [k, size] of sizes.entries()) {
    const got = outcome(file, fast, size);
    expect(got.statements, `${label}, chunking ${k}: statements`).toEqual(want.statements);
    expect(got.map, `${label}, chunking ${k}: map`).toBe(want.map);
  }
  // The reference itself does not depend on the chunking either.
  expect(outcome(file, reference, () => 7)).toEqual(want);
  return want;
}

const constant = (n: number) => () => n;
const EVERY = [1, 2, 3, 4, 5, 7, 11, 13, 64, 1000, 4096, 65536].map(constant);


const HEADER = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n/*!40101 SET NAMES utf8mb4 */;\n/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n";
const TRAILER = '/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2026-12-07 13:18:10\n';

function dumpOf(tables: [string, (string | Buffer)[]][], between = ''): Buffer {
  const parts: (string | Buffer)[] = [HEADER];
  for (const [name, rows] of tables) {
    const q = '`' + name.replace(/`/g, '``') + '`';
    parts.push(`DROP TABLE IF EXISTS ${q};\nCREATE TABLE ${q} (\`id\` int, \`v\` longblob);\n${between}LOCK TABLES ${q} WRITE;\n/*!40000 ALTER TABLE ${q} DISABLE KEYS */;\n`);
    for (const row of rows) parts.push(`INSERT INTO ${q} VALUES `, row, ';\n');
    parts.push(`/*!40000 ALTER TABLE ${q} ENABLE KEYS */;\nUNLOCK TABLES;\n`);
  }
  parts.push(TRAILER);
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}

describe('the lexer against a byte-by-byte reference (reference-lexer.ts)', () => {
  it('quotes and backslashes at every chunk boundary: \\\', \'\', \\\\\', runs of backslashes, escapes off', () => {
    const values = [
      "(1,'it\\'s'),(2,'it''s'),(3,'\\\\'),(4,'\\\\\\''),(5,''''),(6,'\\\\\\\\'),(7,'a\\\\''b'),(8,'')",
      "(9,''''''''''),(10,'\\'\\'\\'\\''),(11,'x\\\\\\\\\\\\\\'y'),(12,'\";\\n);\\n'),(13,\"dq \\\" \"\" ;\")",
      "(14,'" + '\\\\'.repeat(40) + "'),(15,'" + "''".repeat(40) + "'),(16,'" + "\\'".repeat(40) + "')",
    ];
    const nbe = "/*!40101 SET @OLD2=@@SQL_MODE, SQL_MODE='NO_BACKSLASH_ESCAPES' */;\n";
    for (const file of [dumpOf([['esc', values]]), Buffer.concat([Buffer.from(nbe), dumpOf([['raw', ["(1,'a\\'),(2,'b\\\\'),(3,'c'''),(4,'\\')"]]])])]) {
      const ix = same(file, EVERY, 'escapes');
      expect(ix.map).not.toMatch(/"serial"/);
    }
  });

  it('_binary strings, 0x literals and invalid UTF-8 at every chunk boundary', () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x27, 0x27, 0x80, 0x5c, 0x5c, 0x3b, 0x0a, 0xc3, 0x28, 0xe2, 0x82, 0x5c, 0x27, 0xf0, 0x9f]);
    const rows: (string | Buffer)[] = [
      Buffer.concat([Buffer.from("(1,_binary '"), bytes, Buffer.from("'),(2,0xFF27),(3,0x"), Buffer.from('DEADBEEF'.repeat(50)), Buffer.from('),(4,0xdddd),(5,-0xD),(6,0x),(7,X\'DD\')')]),
      "(8,0x" + 'D'.repeat(3000) + "),(9,'delimiter ;'),(10,0x64656C696D69746572)",
    ];
    same(dumpOf([['bin', rows]]), EVERY, 'binary');
  });

  it('strings longer than a chunk, split anywhere', () => {
    const long = "(1,'" + 'x'.repeat(200_000) + "\\'" + 'y'.repeat(70_000) + "''" + 'z'.repeat(65_535) + "\\\\'),(2,0x" + 'AB'.repeat(100_000) + ')';
    same(dumpOf([['long', [long, "(3,'after')"]]]), [65536, 65535, 65537, 4096, 100_003, 1 << 20].map(constant), 'long');
  });

  it('every marker in strings, comments and routines; DELIMITER blocks; what it is not sure of', () => {
    const lines = dumpMarkers('t').join('\n');
    const esc = lines.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n');
    const routine = (body: string, mode: string) =>
      `/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n/*!50003 SET sql_mode              = '${mode}' */ ;\nDELIMITER ;;\nCREATE PROCEDURE \`p\`()\nBEGIN\n  -- a comment\n${body}\nEND ;;\nDELIMITER ;\n/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n`;
    const file = Buffer.concat([
      dumpOf([['t', [`(1,'${esc}')`, "(2,'a'),(3,'b')"]]]),
      Buffer.from(routine(`  SELECT '${lines.replace(/'/g, "''")}' AS doc; # x\n  /* ${lines.replace(/\*\//g, '* /')} */\n  SELECT "${lines.replace(/"/g, '""')}";`, 'STRICT_TRANS_TABLES')),
      Buffer.from(routine("  SELECT 'C:\\';\n  SELECT 'DELIMITER ;\nUNLOCK TABLES;\n';", 'NO_BACKSLASH_ESCAPES')),
      dumpOf([['after', ["(1,'back\\'slash;')"]]]),
    ]);
    same(file, EVERY, 'markers');
    for (const odd of ['SELECT 1; \\G\n', 'SELECT `a\\`;\n', 'SELECT 1\nDELIMITER ;;\n;\n', "/*!50003 SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES') */ ;\n", "INSERT INTO `t` VALUES (1,'cut"]) {
      same(Buffer.concat([dumpOf([['t', ["(1,'a')"]]]), Buffer.from(odd)]), EVERY, odd);
    }
  });

  it('a delimiter that starts with D or a hex digit, after a word byte or 0x digits', () => {
    for (const d of ['d1', 'DD', 'a;', 'F', '0x', 'x;']) {
      const body = `SELECT 0x${d.toUpperCase()}AB${d} SELECT 42${d} SELECT x'DEAD'${d}\nSELECT 0xDE${d}D${d} SELECT 1 delimiter;${d}\nSELECT 'D${d}'${d}\n`;
      same(Buffer.concat([dumpOf([['t', ['(1,0xDEADBEEF),(2,0xdd)']]]), Buffer.from(`DELIMITER ${d}\n${body}DELIMITER ;\n`), dumpOf([['u', ['(1,0xD),(2,X)']]])]), EVERY, `delimiter ${d}`);
    }
  });

  it('random dumps of hostile values, random chunkings', () => {
    const random = mulberry32(27);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const atoms = ["'", "''", '\\', "\\'", '\\\\', '"', '`', ';', ';;', '\n', ' ', 'D', 'd', 'delimiter ', 'DELIMITER ;;\n', '0x', '-', '--', '-- ', '/*', '*/', '/*!', '#', 'x', '42', ',', '(', ')', '\u00e9', '\u{1F600}'];
    const raw = [0xff, 0x80, 0xc3, 0xe2, 0x00, 0x0d, 0x09];
    const text = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, () => (random() < 0.1 ? Buffer.from([pick(raw)]) : Buffer.from(pick(atoms)))));
    const value = (): Buffer => {
      const r = random();
      if (r < 0.35) {
        // A string as mariadb-dump escapes it, or as a hand-written file might hold it.
        const body = text(Math.floor(random() * 40)).toString('latin1');
        const q = random() < 0.8 ? "'" : '"';
        const escaped = random() < 0.7 ? body.replace(/\\/g, '\\\\').replace(new RegExp(q, 'g'), random() < 0.5 ? '\\' + q : q + q) : body;
        return Buffer.concat([Buffer.from(random() < 0.2 ? '_binary ' : ''), Buffer.from(q + escaped + q, 'latin1')]);
      }
      if (r < 0.55) return Buffer.from('0x' + Array.from({ length: Math.floor(random() * 300) }, () => pick([...'0123456789ABCDEFabcdefDDdd'])).join(''));
      if (r < 0.7) return Buffer.from(String(Math.floor((random() - 0.5) * 1e6)));
      if (r < 0.75) return Buffer.from('NULL');
      return text(Math.floor(random() * 6));
    };
    const rows = (): Buffer[] =>
      Array.from({ length: 1 + Math.floor(random() * 6) }, () => Buffer.concat(Array.from({ length: 1 + Math.floor(random() * 5) }, (_, k) => Buffer.concat([Buffer.from(k ? ',(' : '('), value(), Buffer.from(','), value(), Buffer.from(')')]))));
    const modes = ['', "/*!40101 SET @O=@@SQL_MODE, SQL_MODE='NO_BACKSLASH_ESCAPES' */;\n", "/*!40101 SET SQL_MODE=@O */;\n", "/*!40101 SET SQL_MODE='ANSI_QUOTES' */;\n"];
    const chunkers = (): (() => number)[] => [constant(1 + Math.floor(random() * 9)), () => 1 + Math.floor(random() * 40), () => 1 + Math.floor(random() * 700), constant(65536)];
    let serial = 0;
    for (let round = 0; round < 200; round++) {
      const tables = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, k): [string, Buffer[]] => [`t${k}${random() < 0.1 ? '`x' : ''}`, rows()]);
      let file = dumpOf(tables, pick(modes));
      // Some rounds break the file: random bytes in the middle, or a cut anywhere.
      if (random() < 0.3) {
        const at = Math.floor(random() * file.length);
        file = Buffer.concat([file.subarray(0, at), text(1 + Math.floor(random() * 8)), file.subarray(at)]);
      }
      if (random() < 0.15) file = file.subarray(0, Math.floor(random() * file.length));
      const want = same(file, chunkers(), `round ${round}`);
      if (want.map.includes('"serial"')) serial++;
    }
    // The corpus reaches both sides: maps the loader spreads, and files it sends whole.
    expect(serial).toBeGreaterThan(15);
    expect(serial).toBeLessThan(185);
  });
});
