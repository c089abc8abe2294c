import type { MariadbServer } from '../../lib/throwaway/mariadb.js';

/**
 * What a MariaDB database is, asked of the server itself: every table's CHECKSUM TABLE … EXTENDED
 * and row count, the SHOW CREATE of every object (table, view, procedure, function, trigger,
 * event, sequence), routine parameters with their character sets, sequences' state, and the
 * history rows of system-versioned tables (FOR SYSTEM_TIME ALL, with row_start/row_end). Two
 * databases hold the same thing when their fingerprints are equal; names are the database's own.
 */
export async function mysqlFidelityFingerprint(my: MariadbServer, db: string): Promise<Record<string, string>> {
  const lit = `CONVERT(UNHEX('${Buffer.from(db).toString('hex')}') USING utf8mb4)`;
  const q = (n: string): string => '`' + n.replace(/`/g, '``') + '`';
  const rows = async (sql: string): Promise<string[][]> =>
    (await my.sql(sql, db))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  const out: Record<string, string> = {};
  const tables = await rows(`SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${lit} ORDER BY TABLE_NAME`);
  for (const [name, type] of tables) {
    const t = q(name!);
    if (type === 'VIEW') {
      // Column 2 of SHOW CREATE VIEW: the statement (DEFINER, SQL SECURITY, the query).
      out[`view ${name}`] = (await rows(`SHOW CREATE VIEW ${t}`)).map((r) => r.slice(1).join('\t')).join('\n');
      continue;
    }
    if (type === 'SEQUENCE') {
      out[`sequence ${name}`] = (await rows(`SHOW CREATE SEQUENCE ${t}`)).map((r) => r[1]).join('\n');
      out[`sequence ${name} state`] = (await rows(`SELECT * FROM ${t}`)).map((r) => r.join(',')).join('\n');
      continue;
    }
    out[`table ${name}`] = (await rows(`SHOW CREATE TABLE ${t}`)).map((r) => r[1]).join('\n');
    out[`table ${name} checksum`] = (await rows(`CHECKSUM TABLE ${t} EXTENDED`)).map((r) => r[1]).join('');
    out[`table ${name} rows`] = (await rows(`SELECT COUNT(*) FROM ${t}`))[0]![0]!;
    if (type === 'SYSTEM VERSIONED') {
      const cols = (await rows(`SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ${lit} AND TABLE_NAME = CONVERT(UNHEX('${Buffer.from(name!).toString('hex')}') USING utf8mb4) ORDER BY ORDINAL_POSITION`)).map((r) => q(r[0]!));
      const all = [...cols, 'ROW_START', 'ROW_END'].map((c) => `IFNULL(HEX(${c}), 'NULL')`).join(', ');
      const history = await rows(`SELECT COUNT(*), MD5(GROUP_CONCAT(CONCAT_WS(',', ${all}) ORDER BY ${all} SEPARATOR ';')) FROM ${t} FOR SYSTEM_TIME ALL`);
      out[`table ${name} history`] = history[0]!.join(' ');
    }
  }
  for (const [name, type] of await rows(`SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ${lit} ORDER BY ROUTINE_TYPE, ROUTINE_NAME`)) {
    // Name, sql_mode, the statement (body and comments as written), client charset, collations.
    out[`${type!.toLowerCase()} ${name}`] = (await rows(`SHOW CREATE ${type} ${q(name!)}`)).map((r) => r.join('\t')).join('\n');
  }
  out.parameters = (
    await rows(
      `SELECT SPECIFIC_NAME, ORDINAL_POSITION, IFNULL(PARAMETER_NAME, ''), DTD_IDENTIFIER, IFNULL(CHARACTER_SET_NAME, ''), IFNULL(COLLATION_NAME, '') FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = ${lit} ORDER BY SPECIFIC_NAME, ORDINAL_POSITION`,
    )
  )
    .map((r) => r.join(' '))
    .join('\n');
  for (const [name] of await rows(`SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ${lit} ORDER BY TRIGGER_NAME`)) {
    // Without its Created column (when it was made differs after a restore, by design).
    out[`trigger ${name}`] = (await rows(`SHOW CREATE TRIGGER ${q(name!)}`)).map((r) => r.slice(0, 6).join('\t')).join('\n');
  }
  for (const [name] of await rows(`SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ${lit} ORDER BY EVENT_NAME`)) {
    out[`event ${name}`] = (await rows(`SHOW CREATE EVENT ${q(name!)}`)).map((r) => r.join('\t')).join('\n');
  }
  return out;
}

/**
 * Lines shaped like mariadb-dump's own markers and statements (and a privilege escalation if a
 * loader ever ran one as a statement): tenant text that holds them must load as text.
 */
export function dumpMarkers(table: string): string[] {
  return [
    'DELIMITER ;',
    'DELIMITER //',
    'UNLOCK TABLES;',
    `LOCK TABLES \`${table}\` WRITE;`,
    "GRANT ALL ON *.* TO 'tenant'@'%';",
    `/*!40000 ALTER TABLE \`${table}\` ENABLE KEYS */;`,
    `INSERT INTO \`${table}\` VALUES (99,1);`,
    '-- Dump completed on 2026-01-01 00:00:00',
    '/*!50003 SET sql_mode = @x */ ;',
  ];
}
