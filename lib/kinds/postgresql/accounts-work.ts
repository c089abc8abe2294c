import { fromHex, hexOf, hexText, pgIdent } from './sql.js';
import type { AccountReport, AccountsRequest, AccountWork } from '../../model/kind.js';
import { run } from '../../proc/run.js';
import type { PgSession } from './session.js';
import { makeRoleLikeBackup, parseRoles, privilegesByRole, roleDifferences, type PgRole } from './accounts.js';

/**
 * What a PostgreSQL restore under the dumped name does to roles that exist, around the load:
 *
 * - at the first look (nothing changed yet) the roles that own objects in or hold privileges on
 *   the live database now (pg_shdepend, membership in such a role) and the privileges the live
 *   database gives each (its own pg_dump script) are read, beside the backup's (the dump's script
 *   and the run's globals export): what the load will take away or give back is reported.
 * - after the load (object privileges are the dump's again: the database was replaced) the roles
 *   are compared with the backup's: password, attributes, settings, memberships (drift).
 * - `accounts: 'backup'` makes the backup's roles the backup's (ALTER ROLE … WITH the backup's
 *   attributes and password hash, settings, memberships) and sets roles the backup does not know
 *   that held privileges only on this database NOLOGIN; a role also used by another database (or
 *   owning something server-wide) is left, and named.
 */
export interface PgAccountPlan {
  /** The dump's own script without data (pg_restore --create, pre- and post-data). */
  readonly schema: string;
  /** The run's globals export, when it has one. */
  readonly globals?: string;
  readonly statements: readonly string[];
  readonly created: readonly string[];
}

const LOCK_WAIT_MS = 60_000;

type RunSql = (statements: readonly string[], signal?: AbortSignal) => Promise<void>;

export async function preparePgAccounts(s: PgSession, req: AccountsRequest, plan: PgAccountPlan, runSql: RunSql, signal?: AbortSignal): Promise<AccountWork> {
  const { database, into } = req;
  const sameName = into === database;
  const notes: string[] = [];
  let made: readonly string[] = [];
  const base = (): AccountReport => ({ created: made, granted: [], changed: [], locked: [], drift: [], notes, plugins: [] });
  const undo = async (): Promise<string[]> => {
    if (!made.length) return [];
    // Reverse order: a role created for its membership goes after its members.
    await runSql([...made].reverse().map((r) => `DROP ROLE IF EXISTS ${pgIdent(r)};`));
    const dropped = [...made];
    made = [];
    return dropped;
  };
  const beforeLoad = async (): Promise<void> => {
    await runSql(plan.statements, signal);
    made = plan.created;
  };
  if (!sameName || plan.globals === undefined) {
    if (sameName) notes.push('the backup has no globals export: roles were not compared or created');
    return { created: plan.created, plugins: [], beforeLoad, afterLoad: async () => base(), undo, preview: async () => ({ ...base(), created: plan.created }) };
  }

  const backup = parseRoles(plan.globals);
  const wantPrivs = privilegesByRole(plan.schema);
  const existsNow = (await s.sql(s.maintenanceDb, `SELECT count(*) FROM pg_database WHERE datname = ${hexText(database)}`, signal)).trim() !== '0';
  // The live database's own script without data: its owners and ACLs in the dump's words. A lock
  // a tenant holds must not keep the restore waiting at its first look.
  const liveScript = existsNow ? (await run(s.tool('pgDump', ['--create', '--section=pre-data', '--section=post-data', '--no-password', `--lock-wait-timeout=${LOCK_WAIT_MS}`], database), { signal })).stdout : '';
  const havePrivs = privilegesByRole(liveScript);
  const places = await rolePlaces(s, signal);
  const before = await liveRoles(s, signal);
  // The backup's roles that matter here: those its dump names, and the roles they are members of.
  // A superuser of the backup is the server's administrator, not the site's: never compared or
  // changed here (an admin's rotated password stays).
  const siteRole = (r: string): boolean => backup.has(r) && backup.get(r)!.attrs.get('SUPERUSER') !== 'true';
  const relevant = new Set([...wantPrivs.keys()].filter(siteRole));
  for (let grew = true; grew; ) {
    grew = false;
    for (const r of [...relevant]) for (const g of backup.get(r)!.memberOf.keys()) if (siteRole(g) && !relevant.has(g)) (relevant.add(g), (grew = true));
  }
  // Roles the backup does not know that hold something on the database now: privileges or
  // ownership in it, or membership in one of the backup's roles there.
  const strangers = new Set<string>();
  for (const [r, where] of places) if (where.has(database) && !backup.has(r)) strangers.add(r);
  for (const r of havePrivs.keys()) if (!backup.has(r)) strangers.add(r);
  for (const r of before.values()) if (!backup.has(r.name) && [...r.memberOf.keys()].some((g) => relevant.has(g))) strangers.add(r.name);
  for (const r of [...strangers]) if (!before.has(r) || isBootstrap(before.get(r)!)) strangers.delete(r);
  const elsewhere = (r: string): string[] => [...(places.get(r) ?? [])].filter((p) => p !== database).sort();

  /** What differs in privileges on the database now from the dump's, per role. */
  const grantLines = (): string[] => {
    const out: string[] = [];
    for (const r of new Set([...wantPrivs.keys(), ...havePrivs.keys()])) {
      const w = wantPrivs.get(r) ?? new Set<string>();
      const h = havePrivs.get(r) ?? new Set<string>();
      const lost = [...w].filter((x) => !h.has(x));
      const extra = [...h].filter((x) => !w.has(x));
      const show = (x: string[]): string => x.map((t) => t.replace(/;$/, '')).join('; ');
      if (lost.length) out.push(`${r}: the backup grants what it lacks now: ${show(lost)}`);
      if (extra.length) out.push(`${r}: holds what the backup did not grant: ${show(extra)}`);
    }
    return out;
  };
  /** How the roles differ from the backup's, one line each (roles in `settled` left out). */
  const roleLines = (live: ReadonlyMap<string, PgRole>, settled: ReadonlySet<string>, after: boolean): string[] => {
    const out: string[] = [];
    for (const r of [...relevant].sort()) {
      if (settled.has(r)) continue;
      const h = live.get(r);
      if (!h) {
        out.push(`${r}: in the backup, missing on the server`);
        continue;
      }
      const d = roleDifferences(backup.get(r)!, h);
      if (d.length) out.push(`${r}: ${d.join('; ')}`);
    }
    for (const r of [...strangers].sort()) {
      if (settled.has(r)) continue;
      const also = elsewhere(r);
      out.push(`${r}: ${after ? 'held' : 'holds'} privileges on '${database}'${after ? ' before the restore' : ''} but is not in the backup${also.length ? ` (left: also used by ${also.join(', ')})` : ''}`);
    }
    return out;
  };
  /** `--accounts backup`: the statements, and which roles they change or lock. */
  const fixes = (live: ReadonlyMap<string, PgRole>, created: ReadonlySet<string>): { statements: string[]; changed: string[]; locked: string[] } => {
    const statements: string[] = [];
    const changed: string[] = [];
    const locked: string[] = [];
    const exists = (r: string): boolean => live.has(r) || created.has(r);
    for (const r of [...relevant].sort()) {
      const h = live.get(r);
      if (!h || created.has(r) || !roleDifferences(backup.get(r)!, h).length) continue;
      statements.push(...makeRoleLikeBackup(backup.get(r)!, h, exists));
      changed.push(r);
    }
    for (const r of [...strangers].sort()) {
      if (elsewhere(r).length) continue;
      const h = live.get(r);
      if (!h) continue;
      statements.push(`ALTER ROLE ${pgIdent(r)} NOLOGIN;`);
      for (const g of h.memberOf.keys()) if (relevant.has(g)) statements.push(`REVOKE ${pgIdent(g)} FROM ${pgIdent(r)};`);
      locked.push(r);
    }
    return { statements, changed, locked };
  };

  return {
    created: plan.created,
    plugins: [],
    beforeLoad,
    async afterLoad(): Promise<AccountReport> {
      const grants = grantLines();
      if (existsNow) for (const g of grants) notes.push(`before the restore (the load gave back the dump's privileges): ${g}`);
      let live = await liveRoles(s, signal);
      const settled = new Set<string>();
      let changed: string[] = [];
      let locked: string[] = [];
      if (req.accounts === 'backup') {
        const fix = fixes(live, new Set(made));
        await runSql(fix.statements, signal);
        ({ changed, locked } = fix);
        for (const r of [...changed, ...locked]) settled.add(r);
        live = await liveRoles(s, signal);
      }
      return { ...base(), changed, locked, drift: roleLines(live, settled, true) };
    },
    undo,
    async preview(): Promise<AccountReport> {
      const drift = [...roleLines(before, new Set(), false), ...grantLines()];
      const fix = req.accounts === 'backup' ? fixes(before, new Set(plan.created)) : { changed: [], locked: [] };
      return { created: plan.created, granted: [], changed: fix.changed, locked: fix.locked, drift, notes, plugins: [] };
    },
  };
}

/** The server's roles as pg_dumpall --roles-only says them now. */
export async function liveRoles(s: PgSession, signal?: AbortSignal): Promise<Map<string, PgRole>> {
  return parseRoles((await run(s.tool('pgDumpall', ['--roles-only', '--no-password']), { signal })).stdout);
}

/** The bootstrap superuser (postgres): it owns everything pg_shdepend does not record. */
function isBootstrap(r: PgRole): boolean {
  return r.name === 'postgres' && r.attrs.get('SUPERUSER') === 'true';
}

/**
 * Where each role owns something or holds privileges (pg_shdepend, a shared catalog: every
 * database at once): database names, and "tablespace x" / other server-wide objects.
 */
async function rolePlaces(s: PgSession, signal?: AbortSignal): Promise<Map<string, Set<string>>> {
  const rows = await s.sql(
    s.maintenanceDb,
    `SELECT ${hexOf('r.rolname')} || ' ' || ${hexOf(
      `CASE WHEN s.classid = 'pg_database'::regclass THEN (SELECT datname FROM pg_database WHERE oid = s.objid) ` +
        `WHEN s.classid = 'pg_tablespace'::regclass THEN 'tablespace ' || (SELECT spcname FROM pg_tablespace WHERE oid = s.objid) ` +
        `WHEN s.dbid = 0 THEN 'server-wide ' || s.classid::regclass::text ELSE (SELECT datname FROM pg_database WHERE oid = s.dbid) END`,
    )} FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype <> 'p'`,
    signal,
  );
  const out = new Map<string, Set<string>>();
  for (const line of rows.split('\n').filter(Boolean)) {
    const [r, p] = line.trim().split(' ').map(fromHex);
    if (!out.has(r!)) out.set(r!, new Set());
    out.get(r!)!.add(p!);
  }
  return out;
}
