import { hexOf } from './sql.js';
import type { Command } from '../../proc/command.js';
import { openClientSession } from '../../proc/session.js';
import { fromHex, sortedNames, type Inventory, type InventoryProbe } from '../../model/inventory.js';

/**
 * The PostgreSQL inventory of one database: relations (relkind first: r table, p partitioned,
 * v view, m materialized view, S sequence, f foreign table), functions with their argument
 * types, types (enums, domains, ranges, composite and base types; not the array and row types
 * PostgreSQL makes by itself), the number of large objects, the database's own properties
 * (encoding, locale, owner, privileges, comment, settings), and count(*) of every table.
 * query_to_xml runs each count inside this statement, so all of it sees one snapshot. One
 * tab-separated column per line, whatever psql's field separator.
 */
const HEX = hexOf;

/**
 * The database itself, one "name value" per property: what a restore under another name must
 * bring back too. to_jsonb reads the locale columns of every major version (daticulocale in
 * 15-16, datlocale from 17) without naming one that does not exist.
 */
const DATABASE_PROPERTIES = `
SELECT 'encoding ' || pg_encoding_to_char(d.encoding) AS p FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'collate ' || d.datcollate FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'ctype ' || d.datctype FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'locale provider ' || coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'locale ' || coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') FROM pg_database d WHERE d.datname = current_database() AND coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') IS NOT NULL
UNION ALL SELECT 'icu rules ' || (to_jsonb(d) ->> 'daticurules') FROM pg_database d WHERE d.datname = current_database() AND to_jsonb(d) ->> 'daticurules' IS NOT NULL
UNION ALL SELECT 'owner ' || pg_get_userbyid(d.datdba) FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'connection limit ' || d.datconnlimit FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'template ' || d.datistemplate FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'privileges ' || coalesce((SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(d.datacl) a), 'default') FROM pg_database d WHERE d.datname = current_database()
UNION ALL SELECT 'comment ' || c.description FROM pg_database d JOIN pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass WHERE d.datname = current_database()
UNION ALL SELECT CASE WHEN s.setrole = 0 THEN 'setting ' ELSE 'setting of role ' || pg_get_userbyid(s.setrole) || ': ' END || c
  FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase CROSS JOIN unnest(s.setconfig) c WHERE d.datname = current_database()
`;

/** `countMaxBytes`: tables larger than this (pg_relation_size) are listed but not counted (-1 in `rows`). */
export const pgInventorySql = (countMaxBytes?: number): string => `
WITH ns AS (
  SELECT oid, nspname FROM pg_namespace
  WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%'
), rel AS (
  SELECT c.oid, c.relkind::text AS relkind, ns.nspname, c.relname FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
)
SELECT concat_ws(E'\\t', tag, name, value) FROM (
SELECT 'relations' AS tag, ${HEX("relkind || ' ' || nspname || '.' || relname")} AS name, '' AS value FROM rel
UNION ALL
SELECT 'functions', ${HEX("p.prokind::text || ' ' || ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'")}, ''
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT 'types', ${HEX("t.typtype::text || ' ' || ns.nspname || '.' || t.typname")}, ''
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typcategory <> 'A' AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
UNION ALL
SELECT 'lo', '', count(*)::text FROM pg_largeobject_metadata
UNION ALL
SELECT 'database', ${HEX('p')}, '' FROM (${DATABASE_PROPERTIES}) props
UNION ALL
SELECT 'rows', ${HEX("nspname || '.' || relname")},
  ${countMaxBytes === undefined ? '' : `CASE WHEN pg_relation_size(oid) > ${Math.floor(countMaxBytes)} THEN '-1' ELSE `}(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', nspname, relname), false, true, '')))[1]::text${countMaxBytes === undefined ? '' : ' END'}
  FROM rel WHERE relkind = 'r'
) inventory`;

export function parsePgInventory(text: string, rowsFrom: Inventory['rowsFrom'], ms: number): Inventory {
  const objects: Record<string, string[]> = { relations: [], functions: [], types: [], database: [] };
  const rows: Record<string, number> = {};
  const rowsNotCounted: Record<string, string> = {};
  let largeObjects = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [tag, name = '', value = ''] = line.split('\t');
    if (tag === 'lo') largeObjects = Number(value);
    else if (tag === 'rows' && value === '-1') rowsNotCounted[fromHex(name)] = 'larger than verify.count_rows_max: not counted';
    else if (tag === 'rows') rows[fromHex(name)] = Number(value);
    else if (tag && objects[tag]) objects[tag]!.push(fromHex(name));
  }
  return {
    objects: Object.fromEntries(Object.entries(objects).map(([k, v]) => [k, sortedNames(v)])),
    largeObjects,
    rows,
    ...(Object.keys(rowsNotCounted).length ? { rowsNotCounted } : {}),
    rowsFrom,
    ms,
  };
}

const INVENTORY_TIMEOUT_MS = 30 * 60_000;

/** psql arguments for tab-separated, unadorned output that stops at the first error. */
export const PSQL_ARGS = ['-X', '-At', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '--field-separator=\t'];

/**
 * Export a snapshot from a REPEATABLE READ transaction and dump in it (pg_dump --snapshot): the
 * inventory then counts exactly the rows the dump holds, whatever writes happen meanwhile. The
 * transaction stays open until the inventory is read (pg_dump holds one open as long, anyway).
 */
export async function openPgProbe(psql: Command, dump: Command, countMaxBytes: number, signal?: AbortSignal): Promise<InventoryProbe> {
  const session = openClientSession(psql, (token) => `\\echo ${token}`);
  try {
    const snapshot = (await session.request('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();', signal)).trim();
    if (!/^[0-9A-F-]+$/i.test(snapshot)) throw new Error(`pg_export_snapshot returned ${JSON.stringify(snapshot.slice(0, 80))}`);
    return {
      command: { ...dump, args: [...dump.args, `--snapshot=${snapshot}`] },
      async read(_dumpStartedAt: Date, readSignal?: AbortSignal): Promise<Inventory> {
        const started = Date.now();
        // count(*) of a few GB can take minutes; a hung server must not hold the run forever.
        const limit = AbortSignal.timeout(INVENTORY_TIMEOUT_MS);
        const text = await session.request(pgInventorySql(countMaxBytes) + ';', readSignal ? AbortSignal.any([readSignal, limit]) : limit);
        return parsePgInventory(text, 'snapshot', Date.now() - started);
      },
      close: () => session.close(),
    };
  } catch (err) {
    await session.close();
    throw err;
  }
}
