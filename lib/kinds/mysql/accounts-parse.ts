import { accountNameLiteral, mysqlIdent } from './sql.js';

/**
 * The account statements of a MariaDB/MySQL users export (`mariadb-dump --system=users`, or our
 * SHOW CREATE USER + SHOW GRANTS form), one statement a line, read into what a restore needs to
 * decide: who exists in the backup, which grants name which database, roles and their mappings.
 * Pure: no server here (mysql-accounts.ts applies it).
 */
export type AccountKey = string;

export type GrantTarget =
  | { readonly scope: 'global' }
  /** `db`.* (db may be a LIKE pattern with \_ and \% escapes) */
  | { readonly scope: 'database'; readonly db: string }
  /** `db`.`table`, also column grants */
  | { readonly scope: 'table'; readonly db: string; readonly object: string }
  /** FUNCTION / PROCEDURE / PACKAGE [BODY] `db`.`name` */
  | { readonly scope: 'routine'; readonly db: string; readonly object: string; readonly type: string };

export type ExportStatement =
  | { readonly type: 'create-user'; readonly account: AccountKey; readonly sql: string }
  | { readonly type: 'create-role'; readonly account: AccountKey; readonly sql: string }
  | { readonly type: 'grant'; readonly account: AccountKey; readonly target: GrantTarget; readonly privileges: string; readonly tail: string; readonly sql: string }
  | { readonly type: 'grant-role'; readonly account: AccountKey; readonly role: AccountKey; readonly sql: string }
  | { readonly type: 'grant-proxy'; readonly account: AccountKey; readonly proxied: AccountKey; readonly sql: string }
  | { readonly type: 'default-role'; readonly account: AccountKey; readonly role: AccountKey | undefined; readonly sql: string };

const PART = "(?:`(?:[^`]|``)*`|'(?:[^'\\\\]|\\\\.|'')*'|[A-Za-z0-9_$.]+)";
/** `u`@`h`, or a role (no host). */
const ACCOUNT = `${PART}(?:@${PART})?`;

export function accountKey(user: string, host: string): AccountKey {
  return `${user}\0${host}`;
}

/** `'u'@'h'` for messages; a role (no host) as `'r'` (role). */
export function showAccount(key: AccountKey): string {
  const [u, h] = key.split('\0');
  return h === '' ? `'${u}' (role)` : `'${u}'@'${h}'`;
}

/** `u`@`h` (or `r`) as SQL, quoted for any name. */
export function accountSql(key: AccountKey): string {
  const [u, h] = key.split('\0') as [string, string];
  return h === '' ? accountNameLiteral(u) : `${accountNameLiteral(u)}@${accountNameLiteral(h)}`;
}

export function unquote(q: string): string {
  if (q.startsWith('`')) return q.slice(1, -1).replace(/``/g, '`');
  if (q.startsWith("'")) return q.slice(1, -1).replace(/''/g, "'").replace(/\\(.)/g, '$1');
  return q;
}

/** "user\0host" for `u`@`h` or 'u'@'h'; a role without host gets host ''. */
export function parseAccount(text: string): AccountKey | undefined {
  const m = new RegExp(`^(${PART})(?:@(${PART}))?$`).exec(text.trim());
  return m ? accountKey(unquote(m[1]!), m[2] === undefined ? '' : unquote(m[2])) : undefined;
}

/** `/*M!100005 X *\/;` → `X;`: MariaDB's own conditional lines; MySQL 8's (`/*!80001`) are not ours. */
function unwrap(line: string): string | undefined {
  const t = line.trim();
  if (/^\/\*!8\d{4} /.test(t)) return undefined;
  const m = /^\/\*M?!\d{5,6} (.*) \*\/\s*;$/.exec(t);
  return m ? `${m[1]!.trim()};` : t;
}

const CREATE_USER = new RegExp(`^CREATE USER (?:IF NOT EXISTS )?(${ACCOUNT})`);
const CREATE_ROLE = new RegExp(`^CREATE ROLE (?:IF NOT EXISTS )?(${PART})`);
const GRANT_ROLE = new RegExp(`^GRANT (${PART}) TO (${ACCOUNT})(?: WITH ADMIN OPTION)?;$`);
const GRANT_PROXY = new RegExp(`^GRANT PROXY ON (${ACCOUNT}) TO (${ACCOUNT})`);
const GRANT = new RegExp(`^GRANT (.+?) ON (?:(FUNCTION|PROCEDURE|PACKAGE BODY|PACKAGE) )?(\\*|${PART})\\.(\\*|${PART}) TO (${ACCOUNT})(.*);$`);
const DEFAULT_ROLE = new RegExp(`^SET DEFAULT ROLE (NONE|${PART}) FOR (${ACCOUNT});$`);

/** Every account statement of the export, in its order; other lines (SET, comments) are left out. */
export function parseUsersExport(text: string): ExportStatement[] {
  const out: ExportStatement[] = [];
  for (const raw of text.split('\n')) {
    const line = unwrap(raw);
    if (!line) continue;
    let m: RegExpExecArray | null;
    if ((m = CREATE_USER.exec(line))) {
      const account = parseAccount(m[1]!);
      if (account) out.push({ type: 'create-user', account, sql: line });
    } else if ((m = CREATE_ROLE.exec(line))) {
      const account = parseAccount(m[1]!);
      // mariadb-dump's own helper role, which its WITH ADMIN clauses name: not an account of the server.
      if (account && account !== accountKey('mariadb_dump_import_role', '')) out.push({ type: 'create-role', account, sql: line.replace(/ WITH ADMIN \S+;$/, ';') });
    } else if ((m = GRANT_PROXY.exec(line))) {
      const proxied = parseAccount(m[1]!);
      const account = parseAccount(m[2]!);
      if (account && proxied && !proxied.startsWith('\0')) out.push({ type: 'grant-proxy', account, proxied, sql: line });
    } else if ((m = GRANT_ROLE.exec(line))) {
      const role = parseAccount(m[1]!);
      const account = parseAccount(m[2]!);
      if (role && account && role !== accountKey('mariadb_dump_import_role', '')) out.push({ type: 'grant-role', account, role, sql: line });
    } else if ((m = GRANT.exec(line))) {
      const account = parseAccount(m[5]!);
      if (!account) continue;
      const [, privileges, routineType, dbPart, objPart] = m as unknown as [string, string, string | undefined, string, string];
      const target: GrantTarget =
        dbPart === '*' ? { scope: 'global' }
        : routineType ? { scope: 'routine', db: unquote(dbPart), object: unquote(objPart), type: routineType }
        : objPart === '*' ? { scope: 'database', db: unquote(dbPart) }
        : { scope: 'table', db: unquote(dbPart), object: unquote(objPart) };
      out.push({ type: 'grant', account, target, privileges, tail: m[6] ?? '', sql: line });
    } else if ((m = DEFAULT_ROLE.exec(line))) {
      const account = parseAccount(m[2]!);
      if (account) out.push({ type: 'default-role', account, role: m[1] === 'NONE' ? undefined : parseAccount(m[1]!), sql: line });
    }
  }
  return out;
}

/** A database grant's name, which may be a LIKE pattern with \_ and \% escapes, covers `database`? */
export function covers(pattern: string, database: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) re += escapeRe(pattern[++i]!);
    else if (c === '_') re += '.';
    else if (c === '%') re += '.*';
    else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 'su').test(database);
}

const escapeRe = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** A database-level grant's name: the exact name, its escaped form (`site1\_wp`), or a pattern. */
export function isExactName(pattern: string, database: string): boolean {
  return pattern === database || pattern === likeEscape(database);
}

/** `site1_wp` → `site1\_wp`: a database grant naming exactly this database, not a pattern. */
export function likeEscape(name: string): string {
  return name.replace(/[\\_%]/g, (c) => `\\${c}`);
}

/** The grant is about `database` (its rows, its tables, its routines)? */
export function grantCovers(target: GrantTarget, database: string): boolean {
  if (target.scope === 'global') return false;
  if (target.scope === 'database') return covers(target.db, database);
  return target.db === database;
}


/**
 * The GRANT again, for `into` when it is not the dumped name `from` (a database grant only when it
 * names `from` exactly: a pattern is left alone, undefined), without the IDENTIFIED / REQUIRE /
 * resource clauses a global line carries (CREATE USER holds those), keeping WITH GRANT OPTION.
 */
export function grantOn(s: Extract<ExportStatement, { type: 'grant' }>, from: string, into: string): string | undefined {
  const t = s.target;
  let on: string;
  if (t.scope === 'global') return undefined;
  if (t.scope === 'database') {
    if (from === into) on = `${mysqlIdent(t.db)}.*`;
    else if (isExactName(t.db, from)) on = `${mysqlIdent(likeEscape(into))}.*`;
    else return undefined;
  } else {
    const name = from === into ? t.db : into;
    on = `${t.scope === 'routine' ? `${t.type} ` : ''}${mysqlIdent(name)}.${mysqlIdent(t.object)}`;
  }
  const grantOption = /\bGRANT OPTION\b/.test(s.tail) ? ' WITH GRANT OPTION' : '';
  return `GRANT ${s.privileges} ON ${on} TO ${accountSql(s.account)}${grantOption};`;
}
