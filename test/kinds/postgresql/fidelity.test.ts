/**
 * PostgreSQL restores give back exactly what was dumped, and a tenant cannot abuse them: through
 * the BUILT CLI against real servers. A corpus of every object kind and hostile values in every
 * column type, databases with their own encoding, locale, owner, privileges, comment and
 * settings, and one whose dump is tens of MB, is fingerprinted from the server itself
 * (test/helpers/pg-fidelity.ts) before the dump and after each restore: --into beside the
 * original and without it, after DROP DATABASE (and DROP ROLE), and --force over a changed
 * copy. Then a tenant's database that tries to run code as the superuser during the load.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { osUser } from '../../../lib/os-user.js';
import { cmd } from '../../../lib/proc/command.js';
import { run } from '../../../lib/proc/run.js';
import type { Servers } from '../../../lib/throwaway/servers.js';
import { replaceDump } from '../../helpers/dump-files.js';
import { assertBuilt } from '../../helpers/e2e.js';
import { pgDatabaseFingerprint, pgRoles, type PgFingerprint } from '../../helpers/pg-fidelity.js';
import { sandboxPool, type Sandbox } from '../../helpers/sandbox.js';

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');
const CORPUS = ['fid_objects', 'fid_latin', 'fid_big'] as const;
const ROLES = ['fid_owner', 'fid_app', 'fid_lo_owner'] as const;

const workDir = mkdtempSync('/var/tmp/asb-fidelity-verify-');
chmodSync(workDir, 0o755);
const pool = sandboxPool({ config: { verify: { work_dir: workDir, schedule: 'off' } } });
let servers: Servers;
let sb: Sandbox;
const original: Record<string, PgFingerprint> = {};
let rolesBefore: string;

const fp = (db: string): Promise<PgFingerprint> => pgDatabaseFingerprint(servers.postgres, db);
const sql = (text: string, db?: string): Promise<string> => servers.postgres.sql(text, db);
const has = async (db: string): Promise<boolean> => (await sql(`SELECT count(*) FROM pg_database WHERE datname = '${db}'`)) === '1';

async function seedCorpus(): Promise<void> {
  await sql(`
    CREATE ROLE fid_owner LOGIN PASSWORD 'pw' CONNECTION LIMIT 5;
    COMMENT ON ROLE fid_owner IS 'the tenant''s role';
    CREATE ROLE fid_app NOLOGIN;
    CREATE ROLE fid_lo_owner NOLOGIN;
    COMMENT ON ROLE fid_lo_owner IS 'owns a large object, nothing else';
    GRANT fid_app TO fid_owner;
    CREATE DATABASE fid_objects TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'sv-SE' LOCALE 'C.UTF-8' OWNER fid_owner CONNECTION LIMIT 40;
    REVOKE CONNECT, TEMPORARY ON DATABASE fid_objects FROM PUBLIC;
    GRANT CONNECT ON DATABASE fid_objects TO fid_app;
    COMMENT ON DATABASE fid_objects IS 'objects; it''s "all" here
and DATABASE fid_objects on a second line';
    ALTER DATABASE fid_objects SET work_mem = '5MB';
    ALTER DATABASE fid_objects SET search_path = public, "we""ird schema";
    ALTER ROLE fid_app IN DATABASE fid_objects SET statement_timeout = '42s';
    CREATE DATABASE fid_latin TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C' OWNER fid_owner CONNECTION LIMIT 3;
    ALTER DATABASE fid_latin SET datestyle = 'SQL, DMY';
    COMMENT ON DATABASE fid_latin IS 'Latin-1: åäö';
    CREATE DATABASE fid_big OWNER fid_owner;
  `);
  await sql(
    `SET ROLE fid_owner;
     CREATE EXTENSION hstore; CREATE EXTENSION citext; CREATE EXTENSION pgcrypto;
     CREATE SCHEMA "we""ird schema";
     CREATE TYPE mood AS ENUM ('sad', 'ok', 'hap''py');
     CREATE DOMAIN posint AS int CHECK (VALUE > 0);
     CREATE TYPE pair AS (a int, b text);
     CREATE TYPE floatrange AS RANGE (subtype = float8);
     CREATE COLLATION sv (provider = icu, locale = 'sv-SE');
     CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
     CREATE TABLE everything (
       id int GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 7) PRIMARY KEY,
       b bytea, ia int[], ta text[], j jsonb, js json, m mood, p posint, pr pair, fr floatrange,
       n numeric, f float8, ts timestamptz, iv interval, u uuid, ip inet, mac macaddr, bits varbit, tsv tsvector, x xml, pt point,
       h hstore, ci_name citext, name_sv text COLLATE sv, name_ci text COLLATE ci, t text CHECK (char_length(t) < 1000),
       g text GENERATED ALWAYS AS (upper(t)) STORED,
       d text DEFAULT gen_random_uuid()::text
     );
     INSERT INTO everything (b, ia, ta, j, js, m, p, pr, fr, n, f, ts, iv, u, ip, mac, bits, tsv, x, pt, h, ci_name, name_sv, name_ci, t, d) VALUES
       (decode('${ALL_BYTES}', 'hex'), '{1,NULL,-3}', ARRAY['a"b', 'c\\d', NULL, '', 'e,f', '{}', 'NULL'], '{"k": "vé \\"q\\"", "n": [1, 2.50, null], "emoji": "😀"}',
        '{"dup": 1, "dup": 2}', 'hap''py', 5, ROW(1, 'x''y'), '[1.5,2.5)', 'NaN', '-0', 'infinity', '1 year 2 mons -3 days',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '08:00:2b:01:02:03', B'10101', 'a:1 b:2', '<a>x &amp; y</a>', '(1,2)',
        'a=>1, "b c"=>NULL', 'MiXeD', 'Åsa', 'CaSe', E'line1\\nline2\\t\\\\.\\r\\n\\\\.\\nend', 'fixed'),
       (NULL, '{}', '{}', 'null', '[]', 'sad', 1, NULL, 'empty', '1e-300', 'NaN', '-infinity', '0', NULL, '::1', NULL, B'', '', NULL, NULL, '', '', 'ä', '', '', ''),
       (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
     CREATE TABLE events (id bigint, at date NOT NULL, what text) PARTITION BY RANGE (at);
     CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
     CREATE TABLE events_other PARTITION OF events DEFAULT;
     INSERT INTO events SELECT g, date '2025-01-01' + g, 'e' || g FROM generate_series(1, 500) g;
     CREATE MATERIALIZED VIEW event_counts AS SELECT date_trunc('month', at) AS month, count(*) FROM events GROUP BY 1;
     CREATE VIEW sad_ones WITH (security_barrier) AS SELECT id, t FROM everything WHERE m = 'sad';
     CREATE SEQUENCE "we""ird schema".counter START 10 INCREMENT 3;
     SELECT nextval('"we""ird schema".counter'), nextval('"we""ird schema".counter');
     CREATE SEQUENCE untouched;
     CREATE TABLE "we""ird schema"."ta""ble" (k text PRIMARY KEY, v int DEFAULT nextval('"we""ird schema".counter'));
     CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := coalesce(NEW.v, 0) + 1; RETURN NEW; END $$;
     CREATE TRIGGER touch BEFORE INSERT ON "we""ird schema"."ta""ble" FOR EACH ROW EXECUTE FUNCTION touch();
     INSERT INTO "we""ird schema"."ta""ble" (k) VALUES ('a;b'), (E'\\\\.'), ('DROP DATABASE x;');
     CREATE PROCEDURE noop(x int) LANGUAGE sql AS $$ SELECT 1 $$;
     CREATE AGGREGATE concat_all(text) (sfunc = textcat, stype = text, initcond = '');
     CREATE RULE sad_ones_ins AS ON INSERT TO sad_ones DO INSTEAD INSERT INTO everything (m, t) VALUES ('sad', NEW.t);
     ALTER TABLE everything ENABLE ROW LEVEL SECURITY;
     CREATE POLICY mine ON everything FOR SELECT TO fid_app USING (m <> 'sad');
     GRANT SELECT (id, t) ON everything TO fid_app;
     GRANT USAGE ON SCHEMA "we""ird schema" TO fid_app;
     ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner IN SCHEMA public GRANT SELECT ON TABLES TO fid_app;
     COMMENT ON TABLE everything IS E'every type; with \\'quotes\\'\\nand a newline';
     COMMENT ON COLUMN everything.t IS 'text';
     COMMENT ON FUNCTION touch() IS 'bumps v';
     CREATE TEXT SEARCH CONFIGURATION sv_cfg (COPY = pg_catalog.swedish);
     SELECT lo_from_bytea(424242, decode('${ALL_BYTES}', 'hex'));
     SELECT lo_from_bytea(424243, convert_to('second ✓', 'UTF8'));
     COMMENT ON LARGE OBJECT 424243 IS 'a comment';
     RESET ROLE;
     ALTER LARGE OBJECT 424242 OWNER TO fid_lo_owner;
     GRANT SELECT ON LARGE OBJECT 424242 TO fid_app;
     CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
     CREATE EVENT TRIGGER fid_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl();
     CREATE PUBLICATION fid_pub FOR TABLE everything;`,
    'fid_objects',
  );
  await sql(
    `SET client_encoding = 'UTF8';
     SET ROLE fid_owner;
     CREATE TABLE t (id int PRIMARY KEY, s text, c char(3));
     INSERT INTO t VALUES (1, 'åäö ÿ © «»', 'é'), (2, E'\\xe9\\xff', 'x'), (3, NULL, NULL);
     COMMENT ON TABLE t IS 'Latin-1 ÿ';`,
    'fid_latin',
  );
  // ~300k rows, two md5 columns of text: a dump of tens of MB, the size that made the restore's
  // feeder die of SIGPIPE (pg_restore --schema-only stopped reading the pipe early).
  await sql(
    `CREATE TABLE big AS SELECT i AS id, md5(i::text) AS s, md5((i * 7)::text) || md5((i * 13)::text) AS t FROM generate_series(1, 300000) i;
     ALTER TABLE big OWNER TO fid_owner; ALTER TABLE big ADD PRIMARY KEY (id); CREATE INDEX big_s ON big (s);`,
    'fid_big',
  );
}

beforeAll(async () => {
  assertBuilt();
  servers = await pool.start();
  await seedCorpus();
  for (const db of CORPUS) original[db] = await fp(db);
  rolesBefore = await pgRoles(servers.postgres, ROLES);
  sb = await pool.sandbox({ sites: { site1: { pgsql: [...CORPUS] } } });
  const r = await sb.cli(['run']);
  expect(r.exitCode, r.stderr).toBe(0);
}, 600_000);

afterAll(async () => {
  rmSync(workDir, { recursive: true, force: true });
  await pool.destroy();
});

describe('PostgreSQL restore fidelity', () => {
  it('the corpus is what it claims: database properties set, a dump of tens of MB', async () => {
    expect(original.fid_objects!.database).toContain('encoding UTF8');
    expect(original.fid_objects!.database).toContain('icu sv-SE');
    expect(original.fid_objects!.database).toMatch(/settings \*: work_mem=5MB, search_path=.*; fid_app: statement_timeout=42s$/m);
    expect(original.fid_latin!.database).toContain('encoding LATIN1');
    expect(original.fid_latin!.database).toContain('connlimit 3');
    expect(original.fid_objects!.largeObjects).toMatch(/^424242 fid_lo_owner \{.*fid_app=r\/fid_lo_owner.*\}/);
    const big = sb.manifest(sb.latest()!).entries.find((e) => e.database === 'fid_big')!;
    expect(big.bytes).toBeGreaterThan(10_000_000);
    expect(original.fid_big!['rows public.big']).toMatch(/^300000 /);
  });

  it('verify on the same run passes, comparing the database properties it recorded', async () => {
    const r = await sb.cli(['verify', '--json']);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const results = (JSON.parse(r.stdout) as { results: { database: string; outcome: string; problems: string[] }[] }).results;
    for (const db of CORPUS) expect(results.find((x) => x.database === db), db).toMatchObject({ outcome: 'ok', problems: [] });
    const latin = sb.manifest(sb.latest()!).entries.find((e) => e.database === 'fid_latin')!;
    expect(latin.inventory?.objects.database).toEqual(expect.arrayContaining(['encoding LATIN1', 'collate C', 'owner fid_owner', 'connection limit 3', 'setting DateStyle=SQL, DMY']));
    // A comment lives in a shared catalog as the bytes it was written with: read in a LATIN1
    // database those UTF-8 bytes read as Latin-1, the same way at dump time and after the load.
    expect(latin.inventory?.objects.database?.some((p) => p.startsWith('comment Latin-1: '))).toBe(true);
    expect(readdirSync(workDir)).toEqual([]);
  });

  it('--into a new name beside the original: identical, every database (the big one too)', async () => {
    for (const db of CORPUS) {
      const r = await sb.cli(['restore', 'db', db, '--into', `${db} copy`]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await fp(`${db} copy`), db).toEqual(original[db]);
      expect(await fp(db), db).toEqual(original[db]);
      await sql(`DROP DATABASE "${db} copy"`);
    }
  });

  it('--into a new name with the original gone, then under its own name after DROP DATABASE', async () => {
    await sql('DROP DATABASE fid_latin');
    const elsewhere = await sb.cli(['restore', 'db', 'fid_latin', '--into', 'fid_latin_elsewhere']);
    expect(elsewhere.exitCode, elsewhere.stderr).toBe(0);
    expect(await fp('fid_latin_elsewhere')).toEqual(original.fid_latin);
    await sql('DROP DATABASE fid_latin_elsewhere');
    const back = await sb.cli(['restore', 'db', 'fid_latin']);
    expect(back.exitCode, back.stderr).toBe(0);
    expect(await fp('fid_latin')).toEqual(original.fid_latin);
  });

  it('a restore that fails after creating a role drops the role again and names it; the message does not say "not touched"', async () => {
    await sql('DROP DATABASE fid_objects');
    await sql('DROP ROLE fid_lo_owner');
    const runDir = join(sb.dumpsDir, sb.latest()!);
    const entry = sb.manifest(sb.latest()!).entries.find((e) => e.database === 'fid_objects')!;
    const good = readFileSync(join(runDir, entry.path!));
    // A data block damaged past the archive's table of contents: the first look passes, the
    // roles are created, the load fails.
    const damaged = Buffer.from(good);
    const block = damaged.lastIndexOf(Buffer.from([0x78, 0x9c]));
    expect(block).toBeGreaterThan(damaged.length / 2);
    damaged.fill(0xff, block + 2, Math.min(block + 26, damaged.length - 8));
    replaceDump(runDir, 'fid_objects', damaged, { keepManifestHash: false, kind: 'postgresql' });
    try {
      const r = await sb.cli(['restore', 'db', 'fid_objects']);
      expect(r.exitCode, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/the account\(s\) it had created were dropped again: .*fid_lo_owner/);
      expect(r.stderr).not.toMatch(/not touched/);
      expect(await has('fid_objects')).toBe(false);
      expect(await sql(`SELECT count(*) FROM pg_roles WHERE rolname = 'fid_lo_owner'`)).toBe('0');
    } finally {
      replaceDump(runDir, 'fid_objects', good, { keepManifestHash: false, kind: 'postgresql' });
    }
  });

  it('after DROP DATABASE and DROP ROLE of the role only it used: roles come back with their comments, the database identical', async () => {
    // (the failed restore before left both dropped)
    await sql('DROP DATABASE IF EXISTS fid_objects');
    await sql('DROP ROLE IF EXISTS fid_lo_owner');
    const r = await sb.cli(['restore', 'db', 'fid_objects']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/fid_lo_owner/);
    expect(await pgRoles(servers.postgres, ROLES)).toBe(rolesBefore);
    expect(await fp('fid_objects')).toEqual(original.fid_objects);
  });

  it('--force over a changed copy: content, settings, privileges and comment as dumped', async () => {
    await sql(`ALTER DATABASE fid_objects SET work_mem = '9MB'; ALTER ROLE fid_app IN DATABASE fid_objects RESET ALL;
      GRANT TEMPORARY ON DATABASE fid_objects TO PUBLIC; COMMENT ON DATABASE fid_objects IS 'changed'; ALTER DATABASE fid_objects CONNECTION LIMIT 1`);
    await sql(`INSERT INTO everything (t) VALUES ('added'); DROP MATERIALIZED VIEW event_counts; SELECT lo_unlink(424243)`, 'fid_objects');
    await sql('DELETE FROM big WHERE id % 2 = 0', 'fid_big');
    for (const db of ['fid_objects', 'fid_big']) {
      const r = await sb.cli(['restore', 'db', db, '--force']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await fp(db), db).toEqual(original[db]);
    }
  });

  it('--force over a database holding a logical replication subscription', async () => {
    await sql(`CREATE SUBSCRIPTION fid_sub CONNECTION 'host=/nonexistent dbname=nowhere' PUBLICATION fid_pub WITH (connect = false)`, 'fid_latin');
    const r = await sb.cli(['restore', 'db', 'fid_latin', '--force']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await fp('fid_latin')).toEqual(original.fid_latin);
    expect(await sql('SELECT count(*) FROM pg_subscription')).toBe('0');
  });
});

describe('an archive made before dumps had --create', () => {
  // pg_dump 15 writes the DATABASE entries into every custom-format archive; --create only makes
  // pg_dump itself say so. A dump from before is restored as completely.
  it('restores identical too', async () => {
    const scratch = mkdtempSync('/var/tmp/asb-olddump-');
    chmodSync(scratch, 0o777);
    try {
      const pg = osUser('postgres')!;
      const env = { PGHOST: servers.postgres.socketDir, PGPORT: String(servers.postgres.port), PGUSER: 'postgres', PGDATABASE: 'fid_objects', HOME: pg.home };
      await run(cmd(join(servers.postgres.binDir, 'pg_dump'), ['--format=custom', '--no-password', `--file=${join(scratch, 'old.dump')}`], { env, uid: pg.uid, gid: pg.gid, cwd: '/' }));
      const runDir = join(sb.dumpsDir, sb.latest()!);
      replaceDump(runDir, 'fid_objects', readFileSync(join(scratch, 'old.dump')), { keepManifestHash: false, kind: 'postgresql' });
      const r = await sb.cli(['restore', 'db', 'fid_objects', '--into', 'fid_objects_old']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(await fp('fid_objects_old')).toEqual(original.fid_objects);
      await sql('DROP DATABASE fid_objects_old');
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});

describe("a tenant's database that tries to run code as the superuser", () => {
  let tenant: Sandbox;
  // Where the tenant's functions write (world-writable: whoever runs them can, if it gets to).
  let marks: string;

  beforeAll(() => {
    marks = mkdtempSync('/var/tmp/asb-pwn-');
    chmodSync(marks, 0o1777);
  });
  afterAll(() => {
    if (marks) rmSync(marks, { recursive: true, force: true });
  });

  it('index, trigger, default, matview: run + verify + restore db write nothing; CHECK and generated columns are refused by both', async () => {
    await sql(`CREATE ROLE evil_tenant LOGIN PASSWORD 'pw'; CREATE DATABASE tenant_evil OWNER evil_tenant; CREATE DATABASE tenant_check OWNER evil_tenant`);
    // Runs a shell command only when it is the superuser; otherwise (and when refused) does nothing.
    const pwn = `SET ROLE evil_tenant;
      CREATE FUNCTION public.pwn(tag text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        IF current_setting('is_superuser') = 'on' THEN
          BEGIN
            EXECUTE format('COPY (SELECT current_user) TO PROGRAM %L', 'id > ${marks}/' || tag);
          EXCEPTION WHEN OTHERS THEN NULL;
          END;
        END IF;
        RETURN 1;
      END $$;
      CREATE FUNCTION public.wrap(x int, tag text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN EXECUTE 'SELECT public.pwn($1)' USING tag; RETURN x; END $$;`;
    await sql(
      `${pwn}
       CREATE TABLE public.t (id int DEFAULT public.pwn('default'));
       INSERT INTO public.t VALUES (1), (2);
       CREATE INDEX t_idx ON public.t (public.wrap(id, 'index'));
       CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM public.pwn('trigger'); RETURN NEW; END $$;
       CREATE TRIGGER t_trg BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.trg();
       CREATE MATERIALIZED VIEW public.mv AS SELECT public.wrap(id, 'matview') AS w FROM public.t;`,
      'tenant_evil',
    );
    await sql(
      `${pwn}
       CREATE TABLE public.c (id int CHECK (public.wrap(id, 'check') > 0));
       INSERT INTO public.c VALUES (1);
       CREATE TABLE public.g (id int, x int GENERATED ALWAYS AS (public.wrap(id, 'generated')) STORED);
       INSERT INTO public.g (id) VALUES (1);`,
      'tenant_check',
    );
    // Event triggers need the superuser: the tenant cannot make one.
    await sql(`SET ROLE evil_tenant; CREATE FUNCTION public.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM public.pwn('event'); END $$`, 'tenant_evil');
    await expect(sql(`SET ROLE evil_tenant; CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION public.evt()`, 'tenant_evil')).rejects.toThrow(/permission denied|must be superuser/);
    const before = { evil: await fp('tenant_evil'), check: await fp('tenant_check') };
    expect(readdirSync(marks)).toEqual([]);

    tenant = await pool.sandbox({ sites: { site9: { pgsql: ['tenant_evil', 'tenant_check'] } }, config: { databases: { postgresql: { include: ['tenant_*'] } } } });
    const run = await tenant.cli(['run']);
    expect(run.exitCode, run.stderr).toBe(0);
    const verify = await tenant.cli(['verify', '--json']);
    const results = (JSON.parse(verify.stdout) as { results: { database: string; outcome: string; problems: string[] }[] }).results;
    expect(results.find((x) => x.database === 'tenant_evil')).toMatchObject({ outcome: 'ok' });
    const check = results.find((x) => x.database === 'tenant_check')!;
    expect(check.outcome).toBe('failed');
    expect(check.problems.join(' ')).toMatch(/refusing to load it: .*table public\.c: CHECK calls public\.wrap\(\).*table public\.g: GENERATED ALWAYS AS calls public\.wrap\(\)/);

    const copy = await tenant.cli(['restore', 'db', 'tenant_evil', '--into', 'tenant_evil_copy']);
    expect(copy.exitCode, copy.stderr).toBe(0);
    expect(await fp('tenant_evil_copy')).toEqual(before.evil);
    const forced = await tenant.cli(['restore', 'db', 'tenant_evil', '--force']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(await fp('tenant_evil')).toEqual(before.evil);
    const refused = await tenant.cli(['restore', 'db', 'tenant_check', '--force']);
    expect(refused.exitCode).toBe(8);
    expect(refused.stderr).toMatch(/failed before anything was loaded: refusing to load it: .*CHECK calls public\.wrap\(\).*'tenant_check' was not touched/);
    expect(await fp('tenant_check')).toEqual(before.check);
    // A clean dump over it: its safety dump could not be loaded back, so it is not dropped.
    const over = await tenant.cli(['restore', 'db', 'tenant_evil', '--into', 'tenant_check', '--force']);
    expect(over.exitCode).toBe(8);
    expect(over.stderr).toMatch(/its safety dump \S+ could not be loaded back if the restore failed \(refusing to load it: .*\); 'tenant_check' was not replaced/);
    expect(await fp('tenant_check')).toEqual(before.check);
    await sql('DROP DATABASE tenant_check');
    const fresh = await tenant.cli(['restore', 'db', 'tenant_check']);
    expect(fresh.exitCode).toBe(8);
    expect(await has('tenant_check')).toBe(false);

    // Nothing ran as the superuser: not in the live server, not in verify's throwaway one.
    expect(readdirSync(marks).map((f) => `${f} (uid ${statSync(join(marks, f)).uid})`)).toEqual([]);
    // The database is the tenant's again, not postgres's.
    expect(await sql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'tenant_evil'`)).toBe('evil_tenant');
  });
});
