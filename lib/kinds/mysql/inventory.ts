import { fromHex, sortedNames, type Inventory } from '../../model/inventory.js';
import { utf8Literal } from './sql.js';

/**
 * The MySQL/MariaDB inventory of one database: object names from information_schema (and, as
 * category `database`, its character set / collation), then the
 * exact row count of every table (COUNT(*)) inside one consistent snapshot, right after the
 * dump. mariadb-dump's own snapshot cannot be shared, so a table written between the dump's
 * start and our count would compare unequal for no fault of the dump: `UPDATE_TIME`, read after
 * the count, tells which tables were written since the dump started; those keep their presence
 * check but no row count (rowsNotCounted says why). On a quiet night that is none of them.
 *
 * Tables larger than verify.count_rows_max are not counted (COUNT(*) would scan them).
 * The same script reads a loaded copy at verify time (`dumpStartedAt` omitted: every table counted).
 */
export function mysqlInventorySql(database: string, options: { updateTimes: boolean; countMaxBytes?: number }): string {
  const schema = utf8Literal(database);
  const dataTables = `TABLE_SCHEMA = ${schema} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')`;
  const ident = (col: string): string => `'\`', REPLACE(${col}, '\`', '\`\`'), '\`'`;
  return [
    'SET SESSION group_concat_max_len = 67108864',
    `SELECT 'obj', IF(TABLE_TYPE = 'VIEW', 'views', 'tables'), HEX(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${schema} ` +
      `UNION ALL SELECT 'obj', 'routines', HEX(CONCAT(ROUTINE_TYPE, ' ', ROUTINE_NAME)) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${schema} ` +
      // EVENT_OBJECT_SCHEMA is the column MariaDB looks triggers up by: on TRIGGER_SCHEMA alone it
      // opens every database's tables (15 ms per read with 1,000 databases, against 0.2 ms).
      // A trigger lives in its table's schema, so both name the same database.
      `UNION ALL SELECT 'obj', 'triggers', HEX(TRIGGER_NAME) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ${schema} AND TRIGGER_SCHEMA = ${schema} ` +
      `UNION ALL SELECT 'obj', 'events', HEX(EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${schema} ` +
      // The database's own character set and collation (its routines' parameters take them).
      `UNION ALL SELECT 'obj', 'database', HEX(CONCAT(DEFAULT_CHARACTER_SET_NAME, ' / ', DEFAULT_COLLATION_NAME)) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ${schema}`,
    'START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY',
    // One statement counting every table, built in SQL so names never pass through our quoting.
    `SET @asb_q = (SELECT GROUP_CONCAT(CONCAT('SELECT ''rows'', ', QUOTE(HEX(TABLE_NAME)), ', COUNT(*) FROM ', ${ident('TABLE_SCHEMA')}, '.', ${ident('TABLE_NAME')}) SEPARATOR ' UNION ALL ') ` +
      `FROM information_schema.TABLES WHERE ${dataTables}${options.countMaxBytes === undefined ? '' : ` AND IFNULL(DATA_LENGTH, 0) <= ${Math.floor(options.countMaxBytes)}`})`,
    "SET @asb_q = IFNULL(@asb_q, 'SELECT 1 FROM DUAL WHERE FALSE')",
    'PREPARE asb_s FROM @asb_q',
    'EXECUTE asb_s',
    'DEALLOCATE PREPARE asb_s',
    'COMMIT',
    ...(options.updateTimes
      ? [`SELECT 'upd', HEX(TABLE_NAME), IFNULL(ENGINE, ''), IFNULL(UNIX_TIMESTAMP(UPDATE_TIME), ''), IFNULL(DATA_LENGTH, 0) FROM information_schema.TABLES WHERE ${dataTables}`]
      : []),
  ].join(';\n') + ';\n';
}

/** Rows of the script's tab-separated batch output → Inventory. */
export function parseMysqlInventory(rows: readonly (readonly string[])[], options: { dumpStartedAt?: Date; countMaxBytes?: number; skipped?: readonly string[]; ms: number }): Inventory {
  const objects: Record<string, string[]> = { tables: [], views: [], routines: [], triggers: [], events: [] };
  const counted: Record<string, number> = {};
  const written = new Map<string, string>();
  const startSecond = options.dumpStartedAt ? Math.floor(options.dumpStartedAt.getTime() / 1000) : undefined;
  for (const row of rows) {
    const [tag, a = '', b = '', c = '', d = '0'] = row;
    if (tag === 'obj') (objects[a] ??= []).push(fromHex(b));
    else if (tag === 'rows') counted[fromHex(a)] = Number(b);
    else if (tag === 'upd' && startSecond !== undefined) {
      // InnoDB keeps UPDATE_TIME in memory (NULL: not written since the server started, which
      // was before this dump); other engines without one cannot prove they were left alone.
      const updated = c === '' ? (b.toLowerCase() === 'innodb' ? -Infinity : Infinity) : Number(c);
      // Same second as the dump's start counts as "during": the clock has one-second steps.
      if (updated >= startSecond) written.set(fromHex(a), c === '' ? `${b || 'this engine'} keeps no update time` : 'written while the dump ran');
      else if (options.countMaxBytes !== undefined && Number(d) > options.countMaxBytes) written.set(fromHex(a), 'larger than verify.count_rows_max: not counted');
    }
  }
  const rows_: Record<string, number> = {};
  for (const [table, n] of Object.entries(counted)) if (!written.has(table)) rows_[table] = n;
  return {
    objects: Object.fromEntries(Object.entries(objects).map(([k, v]) => [k, sortedNames(v)])),
    rows: rows_,
    ...(written.size ? { rowsNotCounted: Object.fromEntries(written) } : {}),
    rowsFrom: 'beside',
    ...(options.skipped?.length ? { skipped: options.skipped } : {}),
    ms: options.ms,
  };
}
