import type { DumpIndex } from './dump-index.js';

/**
 * Which tables of a mariadb-dump file may have their rows loaded as `SET NAMES binary`, the way
 * mydumper's files load: the server then takes each string literal's bytes as they are instead
 * of checking and counting utf8mb4 characters in every one (those scanners were a large share of
 * mariadbd's CPU in a big load: docs/performance.md).
 *
 * The bytes are the same only where the dump's text encoding is the columns' own: the header
 * sets NAMES utf8mb4 (or utf8/utf8mb3), and every character set and collation the table's
 * CREATE TABLE names is UTF-8 or binary. A latin1 column gets UTF-8 bytes in such a dump and
 * must be converted by the server: its table loads as text. Anything not recognised is text.
 */
const UTF8 = new Set(['utf8mb4', 'utf8mb3', 'utf8']);
const SAFE = new Set([...UTF8, 'binary']);

/** The character set the header's `SET NAMES` gives the rows; undefined when it sets none. */
export function headerNames(header: readonly Buffer[]): string | undefined {
  let names: string | undefined;
  for (const line of header) {
    const m = /^\/\*M?!\d+\s+SET\s+NAMES\s+'?(\w+)'?/i.exec(line.toString('latin1'));
    if (m) names = m[1]!.toLowerCase();
  }
  return names;
}

/** Whether text in the dump's NAMES reaches a UTF-8 connection as the same bytes. */
export function namesAreUtf8(names: string | undefined): boolean {
  // No SET NAMES: our client runs with --default-character-set=utf8mb4.
  return names === undefined || UTF8.has(names);
}

/** The tables whose rows can load as binary (see above). */
export function binarySafeTables(index: DumpIndex): Set<string> {
  const safe = new Set<string>();
  if (!namesAreUtf8(headerNames(index.header))) return safe;
  for (const seg of index.segments) {
    if (seg.kind !== 'sql') continue;
    for (const [table, statement] of createTables(seg.text.toString('latin1'))) {
      if (charsetsSafe(statement)) safe.add(table);
      else safe.delete(table);
    }
  }
  return safe;
}

/**
 * `CREATE TABLE` statements as SHOW CREATE TABLE prints them: the name, then column lines, and a
 * last line starting with ")" at the margin (comments and defaults escape their line breaks).
 */
function* createTables(text: string): Generator<[string, string]> {
  const start = /^CREATE TABLE `((?:[^`]|``)*)` \(\n/gm;
  for (let m = start.exec(text); m; m = start.exec(text)) {
    const end = /^\)[^\n]*;$/m.exec(text.slice(m.index));
    if (!end) continue; // not what mariadb-dump writes: left as text
    // latin1 decoding kept every byte: the name back to UTF-8, as tableOf() reads INSERTs.
    const name = Buffer.from(m[1]!, 'latin1').toString('utf8').replace(/``/g, '`');
    yield [name, text.slice(m.index, m.index + end.index + end[0].length)];
  }
}

function charsetsSafe(statement: string): boolean {
  let tableDefault = false;
  for (const m of statement.matchAll(/\b(DEFAULT CHARSET|CHARSET|CHARACTER SET)\s*=?\s*(\w+)/gi)) {
    if (!SAFE.has(m[2]!.toLowerCase())) return false;
    if (/^DEFAULT CHARSET$/i.test(m[1]!)) tableDefault = true;
  }
  for (const m of statement.matchAll(/\bCOLLATE\s*=?\s*(\w+)/gi)) {
    const collation = m[1]!.toLowerCase();
    if (collation !== 'binary' && !/^(utf8mb4|utf8mb3|utf8)_/.test(collation)) return false;
  }
  return tableDefault;
}
