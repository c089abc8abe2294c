/**
 * What `restore db` does to PostgreSQL roles that exist, through the BUILT CLI against a real
 * server: a site database whose roles an intruder changed after the dump (a password, SUPERUSER,
 * CREATEROLE, a connection limit, a new role with ALL on the site's tables and membership in its
 * owner, a revoked grant), restored with --force with and without --accounts backup, and with
 * --dry-run. Everything is compared with the state the server itself reported BEFORE the
 * break-in (pg_authid rows, pg_auth_members, aclexplode of every relation), never with what the
 * restore printed.
 */
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ManifestEntry } from '../../../lib/model/manifest.js';
import { readRunManifest, zstdBytes, zstdText } from '../../helpers/dump-files.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Servers } from '../../../lib/throwaway/servers.js';
import { assertBuilt } from '../../helpers/e2e.js';
import { pgDatabaseFingerprint } from '../../helpers/pg-fidelity.js';
import { sandboxPool, type Sandbox } from '../../helpers/sandbox.js';

const workDir = mkdtempSync('/var/tmp/asb-pgacc-verify-');
chmodSync(workDir, 0o755);
const pool = sandboxPool({ config: { verify: { work_dir: workDir, schedule: 'off' } } });
let servers: Servers;
let sb: Sandbox;
const sql = (text: string, db?: string): Promise<string> => servers.postgres.sql(text, db);

/** Every role's pg_authid row (the password hash included), one line each, by name. */
async function authid(): Promise<Record<string, string>> {
  const rows = await sql(
    `SELECT rolname || E'\\t' || concat_ws(' ', rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, coalesce(rolpassword, '-'), coalesce(rolvaliduntil::text, '-')) FROM pg_authid WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1`,
  );
  return Object.fromEntries(rows.split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
}

/** Every membership (granted role, member, admin option). */
const members = (): Promise<string> =>
  sql(`SELECT string_agg(g.rolname || ' > ' || m.rolname || ' ' || a.admin_option, E'\\n' ORDER BY 1) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member WHERE g.rolname NOT LIKE 'pg\\_%'`);

/** Every privilege on every relation of `db`, from its ACLs (aclexplode), and the database's own. */
const privileges = (db: string): Promise<string> =>
  sql(
    `SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
       SELECT c.relname || ' ' || coalesce(pg_get_userbyid(a.grantee), 'PUBLIC') || ' ' || a.privilege_type || ' ' || a.is_grantable AS x
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a WHERE n.nspname = 'public'
       UNION ALL SELECT 'database ' || coalesce(pg_get_userbyid(a.grantee), 'PUBLIC') || ' ' || a.privilege_type FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database()) q`,
    db,
  );

/** What the intruder's roles may do on the site's table, as the server decides it. */
const mayWrite = async (role: string): Promise<string> => sql(`SELECT has_table_privilege('${role}', 'public.posts', 'INSERT') || ' ' || has_table_privilege('${role}', 'public.posts', 'DELETE')`, 'acc_site');

let original: { authid: Record<string, string>; members: string; site: string; other: string };

async function breakIn(): Promise<void> {
  await sql(`ALTER ROLE acc_app PASSWORD 'stolen' SUPERUSER;
    ALTER ROLE acc_owner CREATEROLE CONNECTION LIMIT -1;
    DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'intruder') THEN CREATE ROLE intruder LOGIN PASSWORD 'x'; END IF; END $$;
    DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'intruder_wide') THEN CREATE ROLE intruder_wide LOGIN PASSWORD 'y'; END IF; END $$;
    ALTER ROLE intruder LOGIN;
    GRANT acc_owner TO intruder;`);
  await sql(`GRANT ALL ON ALL TABLES IN SCHEMA public TO intruder; GRANT SELECT ON posts TO intruder_wide; REVOKE INSERT ON posts FROM acc_app`, 'acc_site');
  // The second intruder holds privileges on another database too: not the site's to change.
  await sql(`GRANT SELECT ON other_t TO intruder_wide`, 'acc_other');
}

beforeAll(async () => {
  assertBuilt();
  servers = await pool.start();
  await sql(`
    CREATE ROLE acc_owner LOGIN PASSWORD 'owner-pw' CONNECTION LIMIT 5;
    COMMENT ON ROLE acc_owner IS 'the site''s owner';
    CREATE ROLE acc_app LOGIN PASSWORD 'app-pw' VALID UNTIL '2099-01-01';
    CREATE ROLE acc_ro NOLOGIN;
    GRANT acc_ro TO acc_app;
    ALTER ROLE acc_app SET statement_timeout = '30s';
    CREATE DATABASE acc_site OWNER acc_owner;
    CREATE DATABASE acc_other;`);
  await sql(`SET ROLE acc_owner; CREATE TABLE posts (id int PRIMARY KEY, title text); INSERT INTO posts VALUES (1, 'a'), (2, 'b');
    GRANT SELECT, INSERT, UPDATE ON posts TO acc_app; GRANT SELECT ON posts TO acc_ro;`, 'acc_site');
  await sql(`CREATE TABLE other_t (id int)`, 'acc_other');
  // A MariaDB site database too: --dry-run shows the account plan for both kinds.
  await servers.mariadb.sql(`CREATE DATABASE acc_my; CREATE TABLE acc_my.t (id INT PRIMARY KEY);
    CREATE USER 'acc_my_u'@'localhost' IDENTIFIED BY 'pw'; GRANT SELECT ON acc_my.* TO 'acc_my_u'@'localhost';`);
  sb = await pool.sandbox({ sites: { site1: { pgsql: ['acc_site'], mysql: ['acc_my'] }, site2: { pgsql: ['acc_other'] } } });
  const r = await sb.cli(['run']);
  expect(r.exitCode, r.stderr).toBe(0);
  original = { authid: await authid(), members: await members(), site: await privileges('acc_site'), other: await privileges('acc_other') };
}, 600_000);

afterAll(async () => {
  rmSync(workDir, { recursive: true, force: true });
  await pool.destroy();
});

describe('PostgreSQL accounts after a break-in', () => {
  it('--dry-run --accounts backup shows the plan and the drift, and changes nothing', async () => {
    await breakIn();
    const roles = await authid();
    const m = await members();
    const site = await fp('acc_site');
    const r = await sb.cli(['restore', 'db', 'acc_site', '--force', '--accounts', 'backup', '--dry-run']);
    expect(r.exitCode, r.stderr).toBe(0);
    console.log(`--- restore db acc_site --force --accounts backup --dry-run, after the break-in:\n${r.stdout}`);
    expect(r.stdout).toMatch(/acc_app: .*password changed.*SUPERUSER \(the backup's: NOSUPERUSER\)/);
    expect(r.stdout).toMatch(/it would set NOLOGIN: intruder$/m);
    expect(r.stdout).toMatch(/intruder_wide: .*left: also used by acc_other/);
    expect(r.stdout).toMatch(/intruder: holds what the backup did not grant: .*GRANT ALL ON TABLE public.posts TO intruder/);
    expect(r.stdout).toMatch(/acc_app: the backup grants what it lacks now: .*GRANT SELECT,INSERT,UPDATE ON TABLE public.posts TO acc_app/);
    expect(r.stdout).not.toMatch(/from local run (\S+), run \1/);
    expect(await authid()).toEqual(roles);
    expect(await members()).toBe(m);
    expect(await fp('acc_site')).toEqual(site);
  });

  it('--force without --accounts: the load gives back the dumped grants, the roles are left as the intruder made them, and the output says which differ', async () => {
    await breakIn();
    const broken = await authid();
    const brokenMembers = await members();
    const r = await sb.cli(['restore', 'db', 'acc_site', '--force']);
    expect(r.exitCode, r.stderr).toBe(0);
    console.log(`--- restore db acc_site --force, after the break-in:\n${r.stdout}`);
    // Object privileges are the dump's again; roles, passwords and memberships are untouched.
    expect(await privileges('acc_site')).toBe(original.site);
    expect(await authid()).toEqual(broken);
    expect(await members()).toBe(brokenMembers);
    expect(await mayWrite('intruder')).toBe('true true'); // through its membership in acc_owner, left
    expect(r.stdout).toMatch(/roles with privileges on 'acc_site' differ from the backup's \(left as they are; --accounts backup makes them the backup's\):/);
    expect(r.stdout).toMatch(/acc_app: .*password changed/);
    expect(r.stdout).toMatch(/acc_owner: .*CREATEROLE \(the backup's: NOCREATEROLE\).*CONNECTION LIMIT -1 \(the backup's: CONNECTION LIMIT 5\)/);
    expect(r.stdout).toMatch(/intruder: held privileges on 'acc_site' before the restore but is not in the backup/);
    expect(r.stdout).toMatch(/before the restore \(the load gave back the dump's privileges\): intruder: holds what the backup did not grant: GRANT ALL ON TABLE public.posts TO intruder$/m);
    expect(r.stdout).toContain('no role was created or changed');
  });

  it('--force --accounts backup: the site\'s roles are exactly as before the break-in, the intruder is NOLOGIN, nothing else is touched', async () => {
    await breakIn();
    const broken = await authid();
    const other = await privileges('acc_other');
    const r = await sb.cli(['restore', 'db', 'acc_site', '--force', '--accounts', 'backup']);
    expect(r.exitCode, r.stderr).toBe(0);
    console.log(`--- restore db acc_site --force --accounts backup, after the break-in:\n${r.stdout}`);
    const now = await authid();
    for (const role of ['acc_owner', 'acc_app', 'acc_ro', 'postgres']) expect(now[role], role).toBe(original.authid[role]);
    expect(now.intruder).toBe(broken.intruder!.replace(/^(\S+ \S+ \S+ \S+) t /, '$1 f '));
    expect(now.intruder_wide).toBe(broken.intruder_wide); // also used by acc_other: left
    expect(await members()).toBe(original.members);
    expect(await privileges('acc_site')).toBe(original.site);
    expect(await privileges('acc_other')).toBe(other);
    expect(other).toContain('other_t intruder_wide SELECT');
    expect(await mayWrite('intruder')).toBe('false false');
    expect(await sql(`SELECT rolconfig::text FROM pg_roles WHERE rolname = 'acc_app'`)).toBe('{statement_timeout=30s}');
    expect(r.stdout).toMatch(/roles made the backup's \(--accounts backup\): acc_app, acc_owner/);
    expect(r.stdout).toMatch(/set NOLOGIN: intruder$/m);
    expect(r.stdout).toMatch(/intruder_wide: held privileges on 'acc_site' before the restore but is not in the backup \(left: also used by acc_other\)/);
    // Made the backup's or locked: not listed again as differing.
    const drift = r.stdout.split(/differ from the backup's[^\n]*\n/)[1] ?? '';
    expect(drift).not.toMatch(/^\s+(acc_app|acc_owner|intruder):/m);
  });
});

describe('--dry-run on MariaDB', () => {
  it('shows the drift and what --accounts backup would change and lock, and changes no account; --accounts backup then names each account once', async () => {
    const my = servers.mariadb;
    const original = await my.sql(`SHOW CREATE USER 'acc_my_u'@'localhost'; SHOW GRANTS FOR 'acc_my_u'@'localhost'`);
    await my.sql(`ALTER USER 'acc_my_u'@'localhost' IDENTIFIED BY 'stolen'; CREATE USER IF NOT EXISTS 'acc_my_x'@'localhost' IDENTIFIED BY 'x'; GRANT ALL ON acc_my.* TO 'acc_my_x'@'localhost'`);
    const state = async (): Promise<string> => my.sql(`SHOW CREATE USER 'acc_my_u'@'localhost'; SHOW GRANTS FOR 'acc_my_u'@'localhost'; SHOW CREATE USER 'acc_my_x'@'localhost'; SHOW GRANTS FOR 'acc_my_x'@'localhost'; CHECKSUM TABLE acc_my.t EXTENDED`);
    const before = await state();
    const r = await sb.cli(['restore', 'db', 'acc_my', '--kind', 'mysql', '--force', '--accounts', 'backup', '--dry-run']);
    expect(r.exitCode, r.stderr).toBe(0);
    console.log(`--- restore db acc_my --force --accounts backup --dry-run (MariaDB):\n${r.stdout}`);
    expect(r.stdout).toMatch(/accounts it would make the backup's \(--accounts backup\): 'acc_my_u'@'localhost'/);
    expect(r.stdout).toMatch(/it would lock: 'acc_my_x'@'localhost'/);
    expect(r.stdout).toMatch(/'acc_my_u'@'localhost': password, lock, TLS or limits differ/);
    expect(r.stdout).toContain('nothing was changed');
    expect(await state()).toBe(before);
    const done = await sb.cli(['restore', 'db', 'acc_my', '--kind', 'mysql', '--force', '--accounts', 'backup']);
    expect(done.exitCode, done.stderr).toBe(0);
    expect(await my.sql(`SHOW CREATE USER 'acc_my_u'@'localhost'; SHOW GRANTS FOR 'acc_my_u'@'localhost'`)).toBe(original);
    expect(await my.sql(`SHOW CREATE USER 'acc_my_x'@'localhost'`)).toMatch(/ACCOUNT LOCK/);
    expect(done.stdout).toMatch(/locked: 'acc_my_x'@'localhost'/);
    // Made the backup's or locked: named once, not again as differing.
    expect(done.stdout).not.toMatch(/differ from the backup's/);
    expect(done.stdout).toMatch(/as in the backup, but for the locked one\(s\) above/);
    expect(done.stdout).not.toMatch(/from local run (\S+), run \1/);
  });
});

describe('restore site passes --accounts to its databases', () => {
  it('--in-place --dry-run --accounts backup shows each database\'s account plan and changes nothing; then --in-place --accounts backup does it', async () => {
    await breakIn();
    const roles = await authid();
    const site = await fp('acc_site');
    const dry = await sb.cli(['restore', 'site', 'site1', '--databases', '--in-place', '--dry-run', '--accounts', 'backup']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/postgresql database 'acc_site': would be replaced\n.*it would make the backup's \(--accounts backup\): acc_app, acc_owner/);
    expect(dry.stdout).not.toMatch(/from local run (\S+), dumps of run \1/);
    expect(await authid()).toEqual(roles);
    expect(await fp('acc_site')).toEqual(site);
    const r = await sb.cli(['restore', 'site', 'site1', '--databases', '--in-place', '--accounts', 'backup']);
    expect(r.exitCode, r.stderr).toBe(0);
    const now = await authid();
    for (const role of ['acc_owner', 'acc_app', 'acc_ro']) expect(now[role], role).toBe(original.authid[role]);
    expect(now.intruder).toMatch(/^\S+ \S+ \S+ \S+ f /);
    expect(await members()).toBe(original.members);
    const refused = await sb.cli(['restore', 'site', 'site1', '--databases', '--in-place', '--grants']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/--grants copies the accounts' grants to a database restored --into a new name/);
  });
});

describe('verify proves the roles', () => {
  type Results = { results: { kind: string; database: string; outcome: string; problems: string[]; notes?: string[] }[] };
  const site = (r: { stdout: string }) => (JSON.parse(r.stdout) as Results).results.find((x) => x.database === 'acc_site')!;
  const runDir = (): string => join(sb.dumpsDir, sb.latest()!);
  const globalsEntry = (): ManifestEntry => readRunManifest(runDir()).entries.find((e) => e.kind === 'postgresql' && e.object === 'globals')!;
  /** Rewrite the run's manifest (its entries' sha256 follow the files). */
  const rewrite = (edit: (e: ManifestEntry) => ManifestEntry): void => {
    const m = readRunManifest(runDir());
    writeFileSync(join(runDir(), 'manifest.json'), JSON.stringify({ ...m, entries: m.entries.map(edit) }, null, 2));
  };

  it('the dump recorded every role with a digest of its password hash, never the hash; verify of the run passes comparing them', async () => {
    const roles = globalsEntry().details?.roles as { name: string; lines: string[] }[];
    const owner = roles.find((r) => r.name === 'acc_owner')!;
    expect(owner.lines).toEqual(expect.arrayContaining(['attribute CONNECTION LIMIT 5', 'attribute LOGIN true', "comment the site's owner", expect.stringMatching(/^password sha256:[0-9a-f]{16}$/)]));
    expect(roles.find((r) => r.name === 'acc_app')!.lines).toEqual(expect.arrayContaining(['member of acc_ro', 'setting statement_timeout=30s']));
    expect(JSON.stringify(readRunManifest(runDir()))).not.toContain('SCRAM-SHA-256');
    const r = await sb.cli(['verify', '--json']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(site(r)).toMatchObject({ outcome: 'ok', problems: [] });
  });

  it('a globals export that does not bring a role back as it was fails verify (exit 9), naming the role and what differs', async () => {
    const entry = globalsEntry();
    const file = join(runDir(), entry.path!);
    const good = readFileSync(file);
    const text = await zstdText(file);
    expect(text).toMatch(/CONNECTION LIMIT 5/);
    const bad = await zstdBytes(text.replace('CONNECTION LIMIT 5', 'CONNECTION LIMIT 50'), join(workDir, 'globals.sql'));
    writeFileSync(file, bad);
    rewrite((e) => (e.path === entry.path ? { ...e, sha256: sha256(bad), bytes: bad.length } : e));
    try {
      const r = await sb.cli(['verify', '--json']);
      expect(r.exitCode, r.stdout + r.stderr).toBe(9);
      expect(site(r).outcome).toBe('failed');
      expect(site(r).problems.join('\n')).toMatch(/role acc_owner lacks after the load what it had at dump time: attribute CONNECTION LIMIT 5/);
    } finally {
      writeFileSync(file, good);
      rewrite((e) => (e.path === entry.path ? { ...e, sha256: sha256(good), bytes: good.length } : e));
    }
  });

  it('a run from before the role list: verify passes and says the roles were not compared', async () => {
    const entry = globalsEntry();
    rewrite((e) => (e.path === entry.path ? { ...e, details: { ...e.details, roles: undefined } } : e));
    const r = await sb.cli(['verify', '--json']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(site(r).notes?.join('\n')).toMatch(/roles not compared: run older than the role list/);
  });
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const fp = (db: string): Promise<Record<string, string>> => pgDatabaseFingerprint(servers.postgres, db);
