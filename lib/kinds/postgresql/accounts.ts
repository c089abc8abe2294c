import { fromHex, hexOf, pgIdent } from './sql.js';
import { leadingWords, splitScript, unquoteIdent } from './script.js';

/**
 * PostgreSQL roles as `pg_dumpall --roles-only` / `--globals-only` writes them, read into one
 * comparable form, and the privileges a pg_dump / pg_restore script gives each role. Pure: the
 * backup's side is the run's globals export and the dump's own script, the live side the same
 * tools run against the server now, so both sides are the same tool's words and compare as text.
 */
export interface PgRole {
  readonly name: string;
  /** SUPERUSER, INHERIT, CREATEROLE, CREATEDB, LOGIN, REPLICATION, BYPASSRLS → true/false; 'CONNECTION LIMIT', 'VALID UNTIL' → text. */
  readonly attrs: Map<string, string>;
  /** The password hash as dumped (undefined: none). Never printed. */
  password?: string;
  /** `ALTER ROLE x SET …` lines (not IN DATABASE: those are a database's own). */
  readonly settings: string[];
  comment?: string;
  /** Roles it is a member of → 'admin' (WITH ADMIN OPTION) or 'member'. */
  readonly memberOf: Map<string, 'admin' | 'member'>;
}

const IDENT = '(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)';
const FLAGS = ['SUPERUSER', 'INHERIT', 'CREATEROLE', 'CREATEDB', 'LOGIN', 'REPLICATION', 'BYPASSRLS'] as const;
const NOT_A_ROLE = new Set(['public', 'current_user', 'session_user', 'current_role']);

/** Every role a globals or roles-only script creates, with attributes, settings, comment and memberships. */
export function parseRoles(script: string): Map<string, PgRole> {
  const roles = new Map<string, PgRole>();
  const role = (name: string): PgRole => {
    let r = roles.get(name);
    if (!r) roles.set(name, (r = { name, attrs: new Map(), settings: [], memberOf: new Map() }));
    return r;
  };
  const memberships: [string, string, 'admin' | 'member'][] = [];
  for (const part of splitScript(script)) {
    if (part.kind !== 'statement') continue;
    const text = part.text;
    let m = new RegExp(`^CREATE ROLE (${IDENT});$`).exec(text);
    if (m) {
      role(unquoteIdent(m[1]!));
      continue;
    }
    m = new RegExp(`^ALTER ROLE (${IDENT}) WITH ([^]*);$`).exec(text);
    if (m) {
      const r = role(unquoteIdent(m[1]!));
      let rest = m[2]!;
      // pg_dumpall leaves out what is the default: no limit.
      r.attrs.set('CONNECTION LIMIT', '-1');
      const pw = /(?:^| )PASSWORD ('(?:[^']|'')*'|NULL)/.exec(rest);
      if (pw) {
        if (pw[1] !== 'NULL') r.password = pw[1]!;
        rest = rest.replace(pw[0], '');
      }
      const until = /(?:^| )VALID UNTIL ('(?:[^']|'')*')/.exec(rest);
      if (until) (r.attrs.set('VALID UNTIL', until[1]!), (rest = rest.replace(until[0], '')));
      const limit = /(?:^| )CONNECTION LIMIT (-?\d+)/.exec(rest);
      if (limit) (r.attrs.set('CONNECTION LIMIT', limit[1]!), (rest = rest.replace(limit[0], '')));
      for (const w of rest.split(/\s+/).filter(Boolean)) {
        const flag = FLAGS.find((f) => w === f || w === `NO${f}`);
        if (flag) r.attrs.set(flag, String(w === flag));
      }
      continue;
    }
    m = new RegExp(`^ALTER ROLE (${IDENT}) (?:SET|RESET) `).exec(text);
    if (m) {
      role(unquoteIdent(m[1]!)).settings.push(text);
      continue;
    }
    m = new RegExp(`^COMMENT ON ROLE (${IDENT}) IS ([^]*);$`).exec(text);
    if (m) {
      role(unquoteIdent(m[1]!)).comment = m[2]!;
      continue;
    }
    m = new RegExp(`^GRANT (${IDENT}) TO (${IDENT})([^]*);$`).exec(text);
    if (m) memberships.push([unquoteIdent(m[1]!), unquoteIdent(m[2]!), /WITH ADMIN OPTION/.test(m[3]!) ? 'admin' : 'member']);
  }
  for (const [granted, member, how] of memberships) role(member).memberOf.set(granted, how);
  for (const r of roles.values()) r.settings.sort();
  return roles;
}

/**
 * The statements of a pg_dump / pg_restore script that give roles something in the database:
 * ownership (OWNER TO), privileges (GRANT / REVOKE, default privileges FOR ROLE) and the role's
 * settings in the database (ALTER ROLE … IN DATABASE), each under every role it names.
 */
export function privilegesByRole(script: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (raw: string, text: string): void => {
    const r = unquoteIdent(raw.trim());
    if (NOT_A_ROLE.has(r.toLowerCase()) || r.startsWith('pg_')) return;
    let s = out.get(r);
    if (!s) out.set(r, (s = new Set()));
    s.add(text);
  };
  for (const part of splitScript(script)) {
    if (part.kind !== 'statement') continue;
    const first = leadingWords(part.text, 1)[0];
    if (first !== 'ALTER' && first !== 'GRANT' && first !== 'REVOKE') continue;
    const text = part.text;
    for (const m of text.matchAll(new RegExp(`OWNER TO (${IDENT})`, 'g'))) add(m[1]!, text);
    for (const m of text.matchAll(new RegExp(`FOR ROLE (${IDENT})`, 'g'))) add(m[1]!, text);
    const inDb = new RegExp(`^ALTER ROLE (${IDENT}) IN DATABASE `).exec(text);
    if (inDb) add(inDb[1]!, text);
    const to = /(?:^GRANT | GRANT )[^]* TO ([^]+?)(?: WITH GRANT OPTION)?(?: GRANTED BY [^]*)?;$/.exec(text) ?? /(?:^REVOKE | REVOKE )[^]* FROM ([^]+?)(?: CASCADE| RESTRICT)?;$/.exec(text);
    if (to) for (const g of to[1]!.matchAll(new RegExp(IDENT, 'g'))) add(g[0], text);
  }
  return out;
}

/** A role's attributes that differ from the backup's, in words ("password changed", "SUPERUSER (the backup's: NOSUPERUSER)"). */
export function roleDifferences(want: PgRole, have: PgRole): string[] {
  const out: string[] = [];
  if (want.password !== have.password) out.push(want.password === undefined ? 'a password was set (the backup has none)' : have.password === undefined ? 'its password was removed' : 'password changed');
  const keys = [...FLAGS, 'CONNECTION LIMIT', 'VALID UNTIL'];
  for (const k of keys) {
    const w = want.attrs.get(k);
    const h = have.attrs.get(k);
    if (w === h) continue;
    const show = (v: string | undefined): string => (v === undefined ? `no ${k}` : v === 'true' ? k : v === 'false' ? `NO${k}` : `${k} ${v}`);
    out.push(`${show(h)} (the backup's: ${show(w)})`);
  }
  if (want.settings.join('\n') !== have.settings.join('\n')) out.push('settings differ');
  const lost = [...want.memberOf].filter(([r, how]) => have.memberOf.get(r) !== how);
  const extra = [...have.memberOf].filter(([r, how]) => want.memberOf.get(r) !== how);
  if (lost.length) out.push(`the backup makes it a member of ${lost.map(([r, how]) => `${r}${how === 'admin' ? ' (with admin option)' : ''}`).join(', ')}`);
  if (extra.length) out.push(`a member of ${extra.map(([r, how]) => `${r}${how === 'admin' ? ' (with admin option)' : ''}`).join(', ')}, not in the backup`);
  return out;
}

/**
 * The statements that make an existing role the backup's: attributes and password (the
 * backup's ALTER ROLE … WITH), its settings, and its memberships in roles that exist.
 */
export function makeRoleLikeBackup(want: PgRole, have: PgRole, exists: (role: string) => boolean): string[] {
  const who = pgIdent(want.name);
  const words = FLAGS.filter((f) => want.attrs.has(f)).map((f) => (want.attrs.get(f) === 'true' ? f : `NO${f}`));
  words.push(`CONNECTION LIMIT ${want.attrs.get('CONNECTION LIMIT') ?? '-1'}`);
  words.push(`PASSWORD ${want.password ?? 'NULL'}`);
  // A VALID UNTIL cannot be taken back to "none" by ALTER ROLE: 'infinity' is the nearest.
  if (want.attrs.has('VALID UNTIL') || have.attrs.has('VALID UNTIL')) words.push(`VALID UNTIL ${want.attrs.get('VALID UNTIL') ?? "'infinity'"}`);
  const out = [`ALTER ROLE ${who} WITH ${words.join(' ')};`];
  if (want.settings.join('\n') !== have.settings.join('\n')) out.push(`ALTER ROLE ${who} RESET ALL;`, ...want.settings);
  for (const [r, how] of have.memberOf) if (want.memberOf.get(r) !== how) out.push(how === 'admin' && want.memberOf.has(r) ? `REVOKE ADMIN OPTION FOR ${pgIdent(r)} FROM ${who};` : `REVOKE ${pgIdent(r)} FROM ${who};`);
  for (const [r, how] of want.memberOf) if (have.memberOf.get(r) !== how && exists(r)) out.push(`GRANT ${pgIdent(r)} TO ${who}${how === 'admin' ? ' WITH ADMIN OPTION' : ''};`);
  return out;
}

/**
 * The recorded form of a role, for the manifest and verify: attributes, a digest of the password
 * hash (never the hash itself), memberships with their admin option, comment and settings. Read
 * by one query (ROLES_SQL) at dump time and on verify's throwaway server, so both compare as text.
 */
export interface RecordedRole {
  readonly name: string;
  readonly lines: readonly string[];
}

/** One row per role: the hex of its name, a space, the hex of its sorted lines. Needs pg_authid (a superuser). */
export const ROLES_SQL = `SELECT ${hexOf('r.rolname')} || ' ' || ${hexOf(`array_to_string(ARRAY(SELECT x FROM unnest(ARRAY[
    'attribute SUPERUSER ' || r.rolsuper, 'attribute INHERIT ' || r.rolinherit, 'attribute CREATEROLE ' || r.rolcreaterole,
    'attribute CREATEDB ' || r.rolcreatedb, 'attribute LOGIN ' || r.rolcanlogin, 'attribute REPLICATION ' || r.rolreplication,
    'attribute BYPASSRLS ' || r.rolbypassrls, 'attribute CONNECTION LIMIT ' || r.rolconnlimit,
    'attribute VALID UNTIL ' || coalesce(extract(epoch FROM r.rolvaliduntil)::text, 'none'),
    'password ' || coalesce('sha256:' || left(encode(sha256(convert_to(r.rolpassword, 'UTF8')), 'hex'), 16), 'none'),
    'comment ' || shobj_description(r.oid, 'pg_authid')]
    || ARRAY(SELECT 'member of ' || g.rolname || CASE WHEN m.admin_option THEN ' with admin option' ELSE '' END FROM pg_auth_members m JOIN pg_authid g ON g.oid = m.roleid WHERE m.member = r.oid)
    || ARRAY(SELECT 'setting ' || c FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setrole = r.oid AND s.setdatabase = 0)) x
    WHERE x IS NOT NULL ORDER BY x), E'\\n')`)} FROM pg_authid r WHERE r.rolname NOT LIKE 'pg\\_%' ORDER BY r.rolname`;

/** ROLES_SQL's psql -At output as records. */
export function parseRecordedRoles(text: string): RecordedRole[] {
  const hex = (h: string | undefined): string => fromHex(h ?? '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [name, lines] = l.trim().split(' ');
      return { name: hex(name), lines: hex(lines).split('\n').filter(Boolean) };
    });
}

/** The list a globals export's manifest entry holds (undefined for runs from before it was recorded). */
export function recordedRolesOf(details: Readonly<Record<string, unknown>> | undefined): RecordedRole[] | undefined {
  const r = details?.roles;
  return Array.isArray(r) ? (r as RecordedRole[]) : undefined;
}

/**
 * How the roles a server holds after a load differ from the recorded list (roles of the server's
 * own, `own`, left out): every role there must be in the list with the same attributes, password
 * digest, comment and settings and no membership the list lacks; a role this load created
 * (`created`) must also have each recorded membership in a role the server has.
 */
export function roleProblems(recorded: readonly RecordedRole[], now: readonly RecordedRole[], created: ReadonlySet<string>, own: ReadonlySet<string>): string[] {
  const want = new Map(recorded.map((r) => [r.name, r]));
  const present = new Set(now.map((r) => r.name));
  const problems: string[] = [];
  for (const h of now) {
    if (own.has(h.name)) continue;
    const w = want.get(h.name);
    if (!w) {
      problems.push(`role ${h.name} is on the verify server but not in the dump-time list`);
      continue;
    }
    const hs = new Set(h.lines);
    const ws = new Set(w.lines);
    const member = (l: string): string | undefined => /^member of (.*?)(?: with admin option)?$/.exec(l)?.[1];
    const lost = w.lines.filter((l) => !hs.has(l) && (member(l) === undefined || (created.has(h.name) && present.has(member(l)!))));
    const extra = h.lines.filter((l) => !ws.has(l));
    if (lost.length) problems.push(`role ${h.name} lacks after the load what it had at dump time: ${lost.join('; ')}`);
    if (extra.length) problems.push(`role ${h.name} holds after the load what it did not at dump time: ${extra.join('; ')}`);
  }
  return problems;
}
