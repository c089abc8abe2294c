/**
 * A name as a utf8mb4 string literal in SQL: a hex literal with a charset introducer, so no
 * character of a hostile name is ever quoted, and still a literal, so MariaDB looks the schema up
 * in information_schema instead of opening every database's tables (CONVERT(UNHEX(…)) did, which
 * made each query slow on a server with a thousand databases: bench:dumps' tiny section).
 */
export function utf8Literal(name: string): string {
  return `_utf8mb4 X'${Buffer.from(name, 'utf8').toString('hex')}'`;
}

/** A SQL string literal for sql_mode='' (backslash escapes active). */
export function stringLiteral(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\0/g, '\\0')}'`;
}

/**
 * An account's user or host name as a string literal, a quote doubled rather than escaped: the
 * form a drift report shows the admin and the statements run (either form reads the same in any
 * sql_mode with backslash escapes on, which every session of ours keeps).
 */
export function accountNameLiteral(value: string): string {
  return "'" + value.replace(/\\/g, '\\\\').replace(/'/g, "''") + "'";
}

/** A MariaDB identifier in backquotes (a backquote inside doubled): any name, quoted once, here. */
export function mysqlIdent(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}

/** A name's UTF-8 bytes in hex (upper case, as HEX() prints them): compared exactly, case and all. */
export function hexOf(name: string): string {
  return Buffer.from(name, 'utf8').toString('hex').toUpperCase();
}

export { fromHex } from '../../model/inventory.js';
