import { fromHex } from './sql.js';
import { RestoreError } from '../../errors.js';
import type { AccountReport, AccountsRequest, AccountWork } from '../../model/kind.js';
import { utf8Literal } from './sql.js';
import {
  accountKey,
  accountSql,
  grantCovers,
  grantOn,
  parseUsersExport,
  showAccount,
  type AccountKey,
  type ExportStatement,
} from './accounts-parse.js';
import { driftOf, makeLikeBackup } from './accounts-drift.js';

/**
 * What a MariaDB restore does to accounts, around the load of one database:
 *
 * - before the load (nothing else changed yet): the authentication plugins the accounts to create
 *   need are loaded (or the restore stops, naming them); then, restoring under the dumped name,
 *   the accounts the database needs that the server lacks come back from the users export: users
 *   and roles with grants on it, users holding such a role, DEFINERs. With their password, lock,
 *   TLS, limits and PASSWORD EXPIRE (their CREATE USER line; the export's `GRANT USAGE …
 *   IDENTIFIED BY PASSWORD` line would clear the expiry, so global lines are never run), their
 *   roles, default role and proxy grants, and their grants on the database as a whole (a view
 *   over a view checks its DEFINER's rights while it loads). Never their global privileges nor
 *   grants elsewhere.
 * - after the load (the tables and routines exist): their table, column and routine grants.
 * - accounts that exist are left as they are and compared with the backup's (drift, reported);
 *   `accounts: 'backup'` makes them exactly the backup's on this database, and locks accounts the
 *   backup does not know that hold grants only there.
 * - `--into` creates no account and changes none; `copyGrants` grants on the new name what the
 *   accounts hold on the original now.
 * - a failed restore drops the accounts it created again (undo()).
 */
type Query = (sql: string, signal?: AbortSignal) => Promise<string[][]>;

/** Plugins a CREATE USER may name, and the library that provides each (INSTALL SONAME). */
const PLUGIN_LIBRARY: Record<string, string> = { ed25519: 'auth_ed25519', pam: 'auth_pam', gssapi: 'auth_gssapi', parsec: 'auth_parsec' };

type Grant = Extract<ExportStatement, { type: 'grant' }>;

export async function prepareMysqlAccounts(query: Query, exportText: string | undefined, definers: ReadonlySet<AccountKey>, req: AccountsRequest, unescape: (s: string) => string, signal?: AbortSignal): Promise<AccountWork> {
  const backup = exportText === undefined ? [] : parseUsersExport(exportText);
  const { database, into } = req;
  const sameName = into === database;
  const existingRows = await query('SELECT HEX(User), HEX(Host) FROM mysql.user', signal);
  const existing = new Set(existingRows.map(([u, h]) => accountKey(hexText(u), hexText(h))));
  const inBackup = new Set(backup.filter((s) => s.type === 'create-user' || s.type === 'create-role').map((s) => s.account));
  const notes: string[] = [];
  const created: string[] = [];
  const plugins: string[] = [];
  const before: string[] = [];
  const createdKeys = new Set<AccountKey>();
  /** The CREATE USER / CREATE ROLE statements among `before`, by their place there. */
  const creating = new Map<number, ExportStatement>();

  if (exportText === undefined) notes.push('the backup has no users export: accounts were not compared or created');
  const missingDefiners = [...definers].filter((d) => !existing.has(d));
  if (sameName && exportText !== undefined) {
    const needed = neededAccounts(backup, database, definers);
    for (const account of needed) if (!existing.has(account) && inBackup.has(account)) createdKeys.add(account);
    const unknown = missingDefiners.filter((d) => !inBackup.has(d));
    if (unknown.length) notes.push(`DEFINER account(s) neither on the server nor in the users export: ${unknown.map(showAccount).join(', ')}: the views and routines they define fail at use (error 1449) until they exist`);
    plugins.push(...(await loadPlugins(query, backup.filter((s) => s.type === 'create-user' && createdKeys.has(s.account)), req.dryRun ?? false, signal)));
    const creates = backup.filter((s) => (s.type === 'create-user' || s.type === 'create-role') && createdKeys.has(s.account));
    for (const c of creates) creating.set(before.push(c.sql) - 1, c);
    const present = (k: AccountKey): boolean => existing.has(k) || createdKeys.has(k);
    for (const s of backup) {
      if (!createdKeys.has(s.account)) continue;
      if (s.type === 'grant-role' && present(s.role)) before.push(s.sql);
      else if (s.type === 'default-role' && (s.role === undefined || present(s.role))) before.push(s.sql);
      else if (s.type === 'grant-proxy' && present(s.proxied)) before.push(s.sql);
    }
    // Grants on the database as a whole need no object of it, and a view over a view checks its
    // DEFINER's rights while the dump loads: these go before the load, the others after.
    for (const s of backup) {
      if (s.type !== 'grant' || !createdKeys.has(s.account) || s.target.scope !== 'database' || !grantCovers(s.target, database)) continue;
      const sql = grantOn(s, database, into);
      if (sql) before.push(sql);
    }
    created.push(...creates.map((s) => showAccount(s.account)));
  } else if (!sameName && missingDefiners.length) {
    notes.push(`DEFINER account(s) missing on the server, not created (a restore --into creates no account): ${missingDefiners.map(showAccount).join(', ')}: their views and routines in '${into}' fail at use (error 1449) until they exist`);
  }

  /** The accounts beforeLoad() has created so far, in order: what undo() drops. */
  const made: ExportStatement[] = [];
  const runAll = async (statements: readonly string[]): Promise<void> => {
    if (statements.length) await query(statements.join('\n'), signal);
  };

  return {
    created,
    plugins,
    async beforeLoad() {
      try {
        await runAll(before);
        made.push(...creating.values());
      } catch (err) {
        // Stopped part-way: the accounts that exist now were made by it (they were missing).
        const now = new Set((await query('SELECT HEX(User), HEX(Host) FROM mysql.user').catch(() => [])).map(([u, h]) => accountKey(hexText(u), hexText(h))));
        made.push(...[...creating.values()].filter((c) => now.has(c.account)));
        throw err;
      }
    },
    async afterLoad(): Promise<AccountReport> {
      const granted: string[] = [];
      const changed: string[] = [];
      const locked: string[] = [];
      const after: string[] = [];
      if (sameName) {
        for (const s of backup) {
          if (s.type !== 'grant' || !createdKeys.has(s.account) || s.target.scope === 'database' || !grantCovers(s.target, database)) continue;
          const sql = grantOn(s, database, into);
          if (sql) after.push(sql);
        }
        granted.push(...[...createdKeys].filter((k) => backup.some((s) => s.type === 'grant' && s.account === k && grantCovers(s.target, database))).map(showAccount));
      }
      if (!sameName && req.copyGrants) {
        const live = await liveAccounts(query, database, unescape, signal);
        for (const [account, statements] of live) {
          const mine = statements.filter((s): s is Grant => s.type === 'grant' && s.target.scope !== 'global' && grantCovers(s.target, database));
          const sqls = mine.map((s) => grantOn(s, database, into)).filter((x): x is string => x !== undefined);
          if (sqls.length) {
            after.push(...sqls);
            granted.push(showAccount(account));
          }
          const patterns = mine.filter((s) => s.target.scope === 'database' && grantOn(s, database, into) === undefined);
          if (patterns.length) notes.push(`${showAccount(account)} holds ${patterns.map((p) => `\`${(p.target as { db: string }).db}\`.*`).join(', ')} (a name pattern): not copied`);
        }
      }
      await runAll(after);
      let drift: string[] = [];
      if (sameName && exportText !== undefined) {
        if (req.accounts === 'backup') {
          const live = await liveAccounts(query, database, unescape, signal);
          const fix = makeLikeBackup(backup, live, database, existing, createdKeys);
          await runAll(fix.statements);
          changed.push(...fix.changed);
          locked.push(...fix.locked);
        }
        // What was just made the backup's or locked is named above, not again as drift.
        drift = driftOf(backup, await liveAccounts(query, database, unescape, signal), database, new Set([...changed, ...locked]));
      }
      return { created, granted, changed, locked, drift, notes, plugins };
    },
    async preview(): Promise<AccountReport> {
      const live = await liveAccounts(query, database, unescape, signal);
      const granted = sameName
        ? [...createdKeys].filter((k) => backup.some((s) => s.type === 'grant' && s.account === k && grantCovers(s.target, database))).map(showAccount)
        : req.copyGrants
          ? [...live].filter(([, st]) => st.some((s) => s.type === 'grant' && s.target.scope !== 'global' && grantCovers(s.target, database))).map(([k]) => showAccount(k))
          : [];
      const fix = sameName && exportText !== undefined && req.accounts === 'backup' ? makeLikeBackup(backup, live, database, existing, createdKeys) : { changed: [], locked: [] };
      const drift = sameName && exportText !== undefined ? driftOf(backup, live, database) : [];
      return { created, granted, changed: fix.changed, locked: fix.locked, drift, notes, plugins };
    },
    async undo() {
      const dropped: string[] = [];
      for (const s of made.splice(0).reverse()) {
        await query(`${s.type === 'create-role' ? 'DROP ROLE IF EXISTS' : 'DROP USER IF EXISTS'} ${accountSql(s.account)}`);
        dropped.push(showAccount(s.account));
      }
      return dropped.reverse();
    },
  };
}

/** Accounts the database needs: grants on it (direct or through a role they hold), and DEFINERs. */
export function neededAccounts(backup: readonly ExportStatement[], database: string, definers: ReadonlySet<AccountKey>): Set<AccountKey> {
  const needed = new Set<AccountKey>(definers);
  for (const s of backup) if (s.type === 'grant' && grantCovers(s.target, database)) needed.add(s.account);
  // Holders of a needed role, and roles those hold in turn (their default role may name one).
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of backup) {
      if (s.type !== 'grant-role') continue;
      if (needed.has(s.role) && !needed.has(s.account)) (needed.add(s.account), (grew = true));
    }
  }
  return needed;
}

/**
 * Load the authentication plugins the accounts to create need, before anything is changed; a
 * plugin the server cannot load stops the restore, saying which one and how to load it.
 */
async function loadPlugins(query: Query, creates: readonly ExportStatement[], dryRun: boolean, signal?: AbortSignal): Promise<string[]> {
  const wanted = new Map<string, string[]>();
  for (const s of creates) {
    for (const m of s.sql.matchAll(/\b(?:IDENTIFIED (?:VIA|WITH)|OR) ([A-Za-z0-9_]+)/g)) {
      const p = m[1]!.toLowerCase();
      wanted.set(p, [...(wanted.get(p) ?? []), showAccount(s.account)]);
    }
  }
  if (!wanted.size) return [];
  const active = new Set((await query("SELECT LOWER(PLUGIN_NAME) FROM information_schema.PLUGINS WHERE PLUGIN_STATUS = 'ACTIVE'", signal)).map((r) => r[0]!));
  const loaded: string[] = [];
  for (const [plugin, accounts] of wanted) {
    if (active.has(plugin)) continue;
    const library = PLUGIN_LIBRARY[plugin];
    if (dryRun) {
      loaded.push(`${plugin} (${library ? `INSTALL SONAME '${library}'` : 'its plugin library: none known'})`);
      continue;
    }
    try {
      if (!library) throw new Error('no known library provides it');
      await query(`INSTALL SONAME '${library}'`, signal);
      loaded.push(`${plugin} (INSTALL SONAME '${library}')`);
    } catch (err) {
      const why = err instanceof Error ? err.message.split('\n').find((l) => /ERROR/.test(l)) ?? err.message : String(err);
      throw new RestoreError(
        `account(s) ${accounts.join(', ')} need the authentication plugin '${plugin}', which the server has not loaded and could not load (${why}): ` +
          `load it (${library ? `INSTALL SONAME '${library}'` : `its plugin library`}) and restore again; ${loaded.length ? `only the plugin(s) ${loaded.join(', ')} were loaded meanwhile` : 'nothing was changed'}`,
        { plugin },
        { cause: err },
      );
    }
  }
  return loaded;
}

/**
 * The live server's accounts that hold privileges on `database` (db, table, column and routine
 * grants, also through a name pattern), and the roles, with their SHOW CREATE USER and SHOW
 * GRANTS read back through the export's parser.
 */
async function liveAccounts(query: Query, database: string, unescape: (s: string) => string, signal?: AbortSignal): Promise<Map<AccountKey, ExportStatement[]>> {
  const d = utf8Literal(database);
  const rows = await query(
    `SELECT HEX(u.User), HEX(u.Host), u.is_role FROM mysql.user u WHERE (u.User, u.Host) IN (` +
      `SELECT User, Host FROM mysql.db WHERE ${d} LIKE CONVERT(Db USING utf8mb4) COLLATE utf8mb4_bin UNION ` +
      `SELECT User, Host FROM mysql.tables_priv WHERE CONVERT(Db USING utf8mb4) = ${d} COLLATE utf8mb4_bin UNION ` +
      `SELECT User, Host FROM mysql.columns_priv WHERE CONVERT(Db USING utf8mb4) = ${d} COLLATE utf8mb4_bin UNION ` +
      `SELECT User, Host FROM mysql.procs_priv WHERE CONVERT(Db USING utf8mb4) = ${d} COLLATE utf8mb4_bin)`,
    signal,
  );
  const out = new Map<AccountKey, ExportStatement[]>();
  for (const [k, l] of await accountLines(query, rows, unescape, signal)) out.set(k, parseUsersExport(l.join('\n')));
  return out;
}

/**
 * SHOW CREATE USER (not for roles) and SHOW GRANTS of the accounts `rows` name (HEX(User),
 * HEX(Host), is_role), in one client call, each line ending in ';' as in the users export.
 */
export async function accountLines(query: Query, rows: readonly (readonly string[])[], unescape: (s: string) => string, signal?: AbortSignal): Promise<Map<AccountKey, string[]>> {
  const lines = new Map<AccountKey, string[]>();
  if (!rows.length) return lines;
  const script = rows
    .map(([u, h, role]) => {
      const who = accountSql(accountKey(hexText(u), hexText(h)));
      return `SELECT 'asb-account', '${u}', '${h}'; ${role === 'Y' ? '' : `SHOW CREATE USER ${who}; `}SHOW GRANTS FOR ${who}`;
    })
    .join(';\n');
  let current: AccountKey | undefined;
  for (const r of await query(script, signal)) {
    if (r[0] === 'asb-account' && r.length === 3) {
      current = accountKey(hexText(r[1]), hexText(r[2]));
      lines.set(current, []);
    } else if (current !== undefined) {
      lines.get(current)!.push(unescape(r.join('\t')).replace(/;?$/, ';'));
    }
  }
  return lines;
}

/** Every account and role of the server: HEX(User), HEX(Host), is_role. */
export const ALL_ACCOUNTS_SQL = 'SELECT HEX(User), HEX(Host), is_role FROM mysql.user ORDER BY User, Host';

function hexText(hex: string | undefined): string {
  return fromHex(hex ?? '');
}
