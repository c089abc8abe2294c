import { fromHex } from './sql.js';
import { createHash } from 'node:crypto';
import { accountLines, ALL_ACCOUNTS_SQL } from './accounts.js';
import { neededAccounts } from './accounts.js';
import { accountKey, grantCovers, parseUsersExport, showAccount, type AccountKey, type ExportStatement } from './accounts-parse.js';

/**
 * The server's accounts as SHOW CREATE USER / SHOW GRANTS said them at dump time, recorded in the
 * users export's manifest entry (details.accounts), and what `verify` checks against them: the
 * accounts a throwaway server holds after loading a database the way `restore db` does. Password
 * hashes and plugin strings are recorded as a digest, not as they are.
 */
export interface RecordedAccount {
  readonly user: string;
  readonly host: string;
  readonly role: boolean;
  /** Sorted statements, secrets digested. */
  readonly lines: readonly string[];
}

type Query = (sql: string, signal?: AbortSignal) => Promise<string[][]>;

/** `PASSWORD '…'`, `USING '…'`, `AS '…'`: the quoted secret replaced by a digest of it. */
export function digestSecrets(line: string): string {
  return line.replace(/\b(PASSWORD|USING|AS) ('(?:[^'\\]|\\.|'')*')/g, (_m, word: string, secret: string) => `${word} 'sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}'`);
}

export async function recordAccounts(query: Query, unescape: (s: string) => string, signal?: AbortSignal): Promise<RecordedAccount[]> {
  const rows = await query(ALL_ACCOUNTS_SQL, signal);
  const lines = await accountLines(query, rows, unescape, signal);
  return rows.map(([u, h, role]) => {
    const user = fromHex(u ?? '');
    const host = fromHex(h ?? '');
    return { user, host, role: role === 'Y', lines: (lines.get(accountKey(user, host)) ?? []).map(digestSecrets).sort() };
  });
}

/** The list a manifest entry's details hold (undefined for dumps from before it was recorded). */
export function recordedOf(details: Readonly<Record<string, unknown>> | undefined): RecordedAccount[] | undefined {
  const a = details?.accounts;
  return Array.isArray(a) ? (a as RecordedAccount[]) : undefined;
}

function statementsOf(accounts: readonly RecordedAccount[]): Map<AccountKey, ExportStatement[]> {
  const out = new Map<AccountKey, ExportStatement[]>();
  for (const a of accounts) out.set(accountKey(a.user, a.host), parseUsersExport(a.lines.join('\n')));
  return out;
}

/**
 * How the accounts a server holds after `database` was loaded differ from the dump-time list:
 * every account the database needs (grants on it, directly or through a role) must be there with
 * its CREATE USER and its grants on the database; every account the server holds (but those of
 * its own, `own`) must be in the list, and every grant it holds too. Global grants are left out:
 * a restore never gives them.
 */
export function accountProblems(recorded: readonly RecordedAccount[], now: readonly RecordedAccount[], database: string, own: ReadonlySet<AccountKey>): string[] {
  const want = statementsOf(recorded);
  const have = statementsOf(now);
  const all = [...want.values()].flat();
  const needed = neededAccounts(all, database, new Set());
  const problems: string[] = [];
  const relevant = (s: ExportStatement): boolean =>
    s.type === 'create-user' || (s.type === 'grant' && grantCovers(s.target, database)) || (s.type === 'grant-role' && needed.has(s.role));
  for (const account of needed) {
    const w = want.get(account);
    if (!w) continue;
    const h = have.get(account);
    if (!h) {
      problems.push(`account ${showAccount(account)} (privileges on '${database}' at dump time) is missing after the load`);
      continue;
    }
    const hs = new Set(h.filter(relevant).map((s) => s.sql));
    const lost = w.filter(relevant).map((s) => s.sql).filter((x) => !hs.has(x));
    if (lost.length) problems.push(`account ${showAccount(account)} lacks after the load what it had at dump time: ${lost.join(' ')}`);
  }
  for (const [account, h] of have) {
    if (own.has(account)) continue;
    const w = want.get(account);
    if (!w) {
      problems.push(`account ${showAccount(account)} is on the verify server but not in the dump-time list`);
      continue;
    }
    const ws = new Set(w.map((s) => s.sql));
    const extra = h.filter((s) => !(s.type === 'grant' && s.target.scope === 'global') && !ws.has(s.sql)).map((s) => s.sql);
    if (extra.length) problems.push(`account ${showAccount(account)} holds after the load what it did not at dump time: ${extra.join(' ')}`);
  }
  return problems;
}
