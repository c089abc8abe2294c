import { accountSql, grantCovers, grantOn, showAccount, type AccountKey, type ExportStatement } from './accounts-parse.js';

/**
 * The accounts holding privileges on one database, compared with the backup's (drift, which every
 * restore under the dumped name reports) and made the backup's (`--accounts backup`). Pure: the
 * statements come from the users export and from the live server's SHOW CREATE USER / SHOW GRANTS,
 * both read by the export's parser (mysql-accounts-parse.ts).
 */
type Grant = Extract<ExportStatement, { type: 'grant' }>;

/** An account's state on `database` in one comparable form: its CREATE USER and its grants there. */
function stateOn(statements: readonly ExportStatement[], database: string): { create?: string; grants: Set<string>; roles: Set<string> } {
  const grants = new Set<string>();
  const roles = new Set<string>();
  let create: string | undefined;
  for (const s of statements) {
    if (s.type === 'create-user') create = s.sql.replace(/^CREATE USER (IF NOT EXISTS )?/, '').replace(/;$/, '');
    else if (s.type === 'grant' && grantCovers(s.target, database)) grants.add(grantOn(s, database, database)!);
    else if (s.type === 'grant-role') roles.add(showAccount(s.role));
  }
  return { create, grants, roles };
}

function byAccount(statements: readonly ExportStatement[]): Map<AccountKey, ExportStatement[]> {
  const out = new Map<AccountKey, ExportStatement[]>();
  for (const s of statements) out.set(s.account, [...(out.get(s.account) ?? []), s]);
  return out;
}

/** Differences between the backup's accounts with privileges on `database` and the live ones, one line each (accounts named in `settled` left out). */
export function driftOf(backup: readonly ExportStatement[], live: ReadonlyMap<AccountKey, ExportStatement[]>, database: string, settled: ReadonlySet<string> = new Set()): string[] {
  const mine = byAccount(backup);
  const holders = new Set<AccountKey>([...live.keys()]);
  for (const s of backup) if (s.type === 'grant' && grantCovers(s.target, database)) holders.add(s.account);
  const out: string[] = [];
  for (const account of holders) {
    const name = showAccount(account);
    if (settled.has(name)) continue;
    const b = mine.get(account);
    const l = live.get(account);
    if (!b) {
      out.push(`${name}: holds privileges on '${database}' but is not in the backup`);
      continue;
    }
    const want = stateOn(b, database);
    if (!l) {
      out.push(`${name}: in the backup with ${[...want.grants].length} grant(s) on '${database}', holds none now`);
      continue;
    }
    const have = stateOn(l, database);
    if (want.create !== undefined && have.create !== undefined && want.create !== have.create) out.push(`${name}: password, lock, TLS or limits differ from the backup's`);
    const lost = [...want.grants].filter((g) => !have.grants.has(g));
    const extra = [...have.grants].filter((g) => !want.grants.has(g));
    if (lost.length) out.push(`${name}: the backup grants what it lacks now: ${lost.join(' ')}`);
    if (extra.length) out.push(`${name}: holds what the backup did not grant: ${extra.join(' ')}`);
    const lostRoles = [...want.roles].filter((r) => !have.roles.has(r));
    if (lostRoles.length) out.push(`${name}: the backup gives it role(s) it lacks now: ${lostRoles.join(', ')}`);
  }
  return out;
}

/**
 * `--accounts backup`: the accounts holding privileges on `database` become the backup's there:
 * password, lock, TLS and limits from its CREATE USER, its grants on the database and nothing
 * more; accounts the backup does not have that hold grants only on this database are locked.
 */
export function makeLikeBackup(backup: readonly ExportStatement[], live: ReadonlyMap<AccountKey, ExportStatement[]>, database: string, existing: ReadonlySet<AccountKey>, createdKeys: ReadonlySet<AccountKey>): { statements: string[]; changed: string[]; locked: string[] } {
  const mine = byAccount(backup);
  const statements: string[] = [];
  const changed: string[] = [];
  const locked: string[] = [];
  const holders = new Set<AccountKey>(live.keys());
  for (const s of backup) if (s.type === 'grant' && grantCovers(s.target, database)) holders.add(s.account);
  for (const account of holders) {
    if (createdKeys.has(account) || !existing.has(account)) continue;
    const b = mine.get(account);
    const l = live.get(account) ?? [];
    const who = accountSql(account);
    if (!b) {
      const elsewhere = l.some((s) => s.type === 'grant' && (s.target.scope === 'global' ? s.privileges !== 'USAGE' : !grantCovers(s.target, database)));
      if (!elsewhere && l.some((s) => s.type === 'create-user')) {
        statements.push(`ALTER USER ${who} ACCOUNT LOCK;`);
        locked.push(showAccount(account));
      }
      continue;
    }
    const want = stateOn(b, database);
    const have = stateOn(l, database);
    const same = want.create === have.create && want.grants.size === have.grants.size && [...want.grants].every((g) => have.grants.has(g));
    if (same) continue;
    if (want.create !== undefined) statements.push(`ALTER USER ${want.create};`);
    for (const s of l) if (s.type === 'grant' && grantCovers(s.target, database)) statements.push(revokeOf(s));
    statements.push(...want.grants);
    changed.push(showAccount(account));
  }
  return { statements, changed, locked };
}

function revokeOf(s: Grant): string {
  const db = (s.target as { db: string }).db;
  const grant = grantOn(s, db, db)!;
  const who = accountSql(s.account);
  const on = grant.slice(`GRANT ${s.privileges} ON `.length, grant.lastIndexOf(` TO ${who}`));
  return `REVOKE ${s.privileges} ON ${on} FROM ${who};${grant.endsWith(' WITH GRANT OPTION;') ? ` REVOKE GRANT OPTION ON ${on} FROM ${who};` : ''}`;
}
