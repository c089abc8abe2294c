import { mysqlIdent } from '../sql.js';
import type { DumpIndex } from './dump-index.js';

/**
 * A MariaDB database's own properties (its default character set and collation) and the dump's
 * statements about them. mariadb-dump (without --databases) writes no CREATE DATABASE, but around
 * each routine or trigger created under another collation than the database's current one it
 * writes `ALTER DATABASE \`name\` CHARACTER SET cs COLLATE co ;` (the routine's), then the same
 * with the current ones: those lines name the dumped database, so a load under another name must
 * aim them at that name, or it alters the original (or fails when the original is gone).
 */
export interface DatabaseProps {
  readonly charset: string;
  readonly collation: string;
}

/** The properties a manifest entry's details recorded at dump time, if it did. */
export function propsOfDetails(details: Readonly<Record<string, unknown>> | undefined): DatabaseProps | undefined {
  const charset = details?.charset;
  const collation = details?.collation;
  return typeof charset === 'string' && typeof collation === 'string' && NAME.test(charset) && NAME.test(collation) ? { charset, collation } : undefined;
}

const NAME = /^[A-Za-z0-9_]+$/;
const ALTER = /^ALTER DATABASE (`(?:[^`]|``)*`) CHARACTER SET ([A-Za-z0-9_]+) COLLATE ([A-Za-z0-9_]+) (;;?)$/;


/**
 * One statement of a dump, aimed at `into` when it is mariadb-dump's own `ALTER DATABASE` about
 * `from`; any other statement comes back unchanged. The caller hands it statements (the loader's
 * statement boundaries), never text inside one.
 */
export function retargetStatement(statement: string, from: string, into: string): string {
  const m = ALTER.exec(statement.replace(/\n$/, ''));
  if (!m || m[1] !== mysqlIdent(from)) return statement;
  return `ALTER DATABASE ${mysqlIdent(into)} CHARACTER SET ${m[2]} COLLATE ${m[3]} ${m[4]}${statement.endsWith('\n') ? '\n' : ''}`;
}

/**
 * The dump's map with its schema segments' ALTER DATABASE lines aimed at `into`. The map splits
 * the schema at line ends outside the rows; mariadb-dump writes these statements on a line of
 * their own between DELIMITER blocks, and only lines of exactly that form are touched.
 */
export function retargetIndex(index: DumpIndex, from: string, into: string): DumpIndex {
  if (from === into) return index;
  const marker = Buffer.from(`ALTER DATABASE ${mysqlIdent(from)} `);
  return {
    ...index,
    segments: index.segments.map((seg) => {
      if (seg.kind !== 'sql' || !seg.text.includes(marker)) return seg;
      const lines = seg.text.toString('utf8').split('\n');
      return { kind: 'sql' as const, text: Buffer.from(lines.map((l) => retargetStatement(l, from, into)).join('\n'), 'utf8') };
    }),
  };
}

/** Does the dump hold ALTER DATABASE statements about `from` (a load under another name must retarget them)? */
export function altersDatabase(index: DumpIndex, from: string): boolean {
  const marker = Buffer.from(`ALTER DATABASE ${mysqlIdent(from)} `);
  return index.segments.some((seg) => seg.kind === 'sql' && seg.text.includes(marker));
}

/**
 * The database's properties as an old dump (no details recorded) tells them: the last ALTER
 * DATABASE line sets the database's current ones back after the last routine. undefined when
 * the dump has none (every routine had the database's collation, or it has no routines).
 */
export function propsFromDump(index: DumpIndex): DatabaseProps | undefined {
  let found: DatabaseProps | undefined;
  for (const seg of index.segments) {
    if (seg.kind !== 'sql' || !seg.text.includes('ALTER DATABASE ')) continue;
    for (const line of seg.text.toString('utf8').split('\n')) {
      const m = ALTER.exec(line);
      if (m) found = { charset: m[2]!, collation: m[3]! };
    }
  }
  return found;
}
