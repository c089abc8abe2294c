import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { resolvePaths } from '../../../lib/config/paths.js';
import { configSchema, type PostgresqlConfig } from '../../../lib/config/schema.js';
import type { LoadedConfig } from '../../../lib/config/load.js';
import { postgresqlKind } from '../../../lib/kinds/postgresql/index.js';
import { osUser } from '../../../lib/os-user.js';
import type { Compression, DatabaseSession, DumpSpec } from '../../../lib/model/kind.js';
import { BackupError, CommandError } from '../../../lib/errors.js';
import { memoryLogger } from '../../../lib/log.js';
import { cmd } from '../../../lib/proc/command.js';
import { pipeToFile } from '../../../lib/proc/pipeline.js';
import { run } from '../../../lib/proc/run.js';
import { whichSystem } from '../../../lib/proc/which.js';
import { startPostgres, type PostgresServer } from '../../../lib/throwaway/postgres.js';

const APP_PASSWORD = 'app-Pa55word-7f3c';
const ADMIN_PASSWORD = 'adm1n-Pa55word-9e1d';
// Each would break something if it reached a shell, a conninfo parser or a line-based reader.
const HOSTILE = ['my db', `it's "quoted"`, '$(touch /tmp/apiscp-pwned)', 'dbname=postgres', 'ünïcødé 数据库 🐘', 'line\nbreak'];
const PG = osUser('postgres')!;

let srv: PostgresServer;
let faulty: PostgresServer;
let work: string;

const ident = (s: string): string => `"${s.replace(/"/g, '""')}"`;
const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;
const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

function loaded(pg: Partial<PostgresqlConfig>): LoadedConfig {
  const config = configSchema.parse({ databases: { postgresql: pg } });
  return { config, file: undefined, paths: resolvePaths(config) };
}

async function openOn(server: PostgresServer, extra: Partial<PostgresqlConfig> = {}): Promise<DatabaseSession | undefined> {
  const cfg = { enabled: true as const, host: server.socketDir, port: server.port, ...extra };
  return postgresqlKind.open({ loaded: loaded(cfg), log: memoryLogger() });
}

async function plan(session: DatabaseSession, db: string): Promise<DumpSpec> {
  return session.planDatabase(db);
}

let counter = 0;
/** Dump through the real pipeline (optionally compressed), then run the spec's own verification. */
async function dump(spec: DumpSpec, compression: Compression = 'none'): Promise<string> {
  const file = join(work, `dump-${++counter}${spec.extension}`);
  const stages = [spec.command];
  if (compression !== 'none') stages.push(cmd(whichSystem(compression)!, ['-c']));
  await pipeToFile(stages, file);
  await spec.checkFile(file, compression);
  return file;
}

/** pg_restore as postgres (peer auth) into a fresh database; the dump is root's 0600 file. */
async function restore(server: PostgresServer, file: string, target: string): Promise<void> {
  await server.sql(`CREATE DATABASE ${ident(target)}`);
  await chmod(file, 0o644);
  const env = { PGHOST: server.socketDir, PGPORT: String(server.port), PGUSER: 'postgres', PGDATABASE: target, HOME: PG.home };
  await run(cmd(join(server.binDir, 'pg_restore'), ['--exit-on-error', '--no-password', '-d', target, file], { env, uid: PG.uid, gid: PG.gid, cwd: '/' }));
}

const USER_NS = `NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`;
/** Object counts, large-object contents and a checksum of every table's ordered rows. */
async function fingerprint(server: PostgresServer, db: string): Promise<string> {
  return server.sql(
    `SELECT 'tables', count(*) FROM pg_tables WHERE schemaname ${USER_NS};
     SELECT 'views', count(*) FROM pg_views WHERE schemaname ${USER_NS};
     SELECT 'sequences', count(*) FROM pg_sequences;
     SELECT 'functions', count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname ${USER_NS};
     SELECT 'triggers', count(*) FROM pg_trigger WHERE NOT tgisinternal;
     SELECT 'large objects', count(*), md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)) FROM pg_largeobject_metadata;
     SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\\n'' ORDER BY t::text), '''')) FROM %I.%I t',
                   schemaname || '.' || tablename, schemaname, tablename)
       FROM pg_tables WHERE schemaname ${USER_NS} ORDER BY 1 \\gexec`,
    db,
  );
}

async function seedContent(server: PostgresServer): Promise<void> {
  const blobFile = join(server.baseDir, 'blob.bin');
  await writeFile(blobFile, randomBytes(200_000));
  await chmod(blobFile, 0o644);
  await server.sql(`CREATE ROLE app_user LOGIN PASSWORD ${literal(APP_PASSWORD)};
    CREATE ROLE backup_admin SUPERUSER LOGIN PASSWORD ${literal(ADMIN_PASSWORD)};
    CREATE DATABASE content;`);
  await server.sql(
    `CREATE SCHEMA shop AUTHORIZATION app_user;
     CREATE SEQUENCE shop.ticket START 100;
     SELECT nextval('shop.ticket') FROM generate_series(1, 5);
     CREATE TABLE shop.orders (id serial PRIMARY KEY, item text NOT NULL, qty int, audit text);
     ALTER TABLE shop.orders OWNER TO app_user;
     CREATE FUNCTION shop.stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.audit := 'stamped'; RETURN NEW; END$$;
     CREATE TRIGGER orders_stamp BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.stamp();
     INSERT INTO shop.orders (item, qty) SELECT 'item ' || i || E'\\t''"\\\\ ☃', i % 10 FROM generate_series(1, 1000) i;
     CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE qty > 5;
     CREATE TABLE "Bestellübersicht" ("Größe €" text, n int);
     INSERT INTO "Bestellübersicht" VALUES ('XL 😀', 1), (NULL, 2), (E'multi\\nline', 3);
     CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
     INSERT INTO blobs SELECT 1, decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex') FROM generate_series(0, 255) i;
     SELECT lo_from_bytea(0, (SELECT data FROM blobs WHERE id = 1));
     SELECT lo_import(${literal(blobFile)});`,
    'content',
  );
}

async function seedBig(server: PostgresServer): Promise<void> {
  // Random-ish text compresses poorly, so pg_dump -Fc needs about two seconds for it.
  await server.sql('CREATE DATABASE big');
  await server.sql(`CREATE TABLE t AS SELECT i, md5(i::text) || md5((i * 7)::text) AS a FROM generate_series(1, 800000) i`, 'big');
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'apiscp-pgtest-'));
  await chmod(work, 0o755);
  [srv, faulty] = await Promise.all([startPostgres(), startPostgres()]);
  await Promise.all([seedContent(srv), seedBig(faulty)]);
  for (const [i, name] of HOSTILE.entries()) {
    await srv.sql(`CREATE DATABASE ${ident(name)}`);
    await srv.sql(`CREATE TABLE marker (i int, name text); INSERT INTO marker VALUES (${i}, current_database());`, name);
  }
}, 180_000);

afterAll(async () => {
  await Promise.all([srv?.destroy(), faulty?.destroy()]);
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

describe('postgresql kind on a live server', () => {
  test('open: versions, matching client tools, peer auth as the postgres OS user', async () => {
    const session = (await openOn(srv))!;
    expect(session.versions.server).toBe(srv.version);
    expect(session.versions.client.split('.')[0]).toBe(srv.version.split('.')[0]);
    const spec = await plan(session, 'content');
    expect(spec.command.file).toBe(join(srv.binDir, 'pg_dump'));
    expect(spec.command.uid).toBe(PG.uid);
    expect(spec.command.env?.PGDATABASE).toBe('content');
    expect(spec.command.args).not.toContain('content');
    expect({ format: spec.format, extension: spec.extension, compressible: spec.compressible, lockMode: spec.lockMode }).toEqual({
      format: 'custom',
      extension: '.dump',
      compressible: false,
      lockMode: 'snapshot',
    });
    await session.close();
  }, 30_000);

  test('a table locked exclusively by another session fails the dump after lock_wait_timeout, not after hours', async () => {
    await srv.sql('CREATE DATABASE locked_db');
    await srv.sql('CREATE TABLE t (id int); INSERT INTO t VALUES (1);', 'locked_db');
    // The holder keeps its lock until we end its backend (no race against a fixed sleep).
    // Its end (we terminate it) is awaited in finally; handled from the start, so a test that
    // times out under load, and the server stopping after it, is not an unhandled rejection.
    const holder = srv.sql("SET application_name = 'lock_holder'; BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600); COMMIT;", 'locked_db').catch(() => undefined);
    try {
      // Let the holder take its lock first.
      for (let i = 0; i < 100; i++) {
        const n = await srv.sql("SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL", 'locked_db');
        if (n.trim() !== '0') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const session = (await openOn(srv, { lock_wait_timeout: '1s' }))!;
      const spec = await plan(session, 'locked_db');
      expect(spec.command.args).toContain('--lock-wait-timeout=1000');
      const started = Date.now();
      const err = await dump(spec).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      // pg_dump enforces it as a statement timeout on its LOCK TABLE.
      expect((err as CommandError).message).toMatch(/statement timeout/);
      expect(Date.now() - started).toBeLessThan(5000);
      await session.close();
    } finally {
      await srv.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'lock_holder'");
      await holder;
    }
  });

  test('enabled: false is skipped; under auto (installed here) a server that does not answer is an error', async () => {
    expect(postgresqlKind.expected({ loaded: loaded({ enabled: false }), log: memoryLogger() })).toBeUndefined();
    expect(await postgresqlKind.open({ loaded: loaded({ enabled: false }), log: memoryLogger() })).toBeUndefined();
    const nowhere = loaded({ enabled: 'auto', host: work, port: srv.port });
    expect(postgresqlKind.expected({ loaded: nowhere, log: memoryLogger() })).toMatch(/^(server binary|service unit) /);
    await expect(postgresqlKind.open({ loaded: nowhere, log: memoryLogger() })).rejects.toThrow(/cannot connect to PostgreSQL at /);
  }, 30_000);

  test('lists hostile database names exactly, dumps and restores each one', async () => {
    const session = (await openOn(srv))!;
    await rm('/tmp/apiscp-pwned', { force: true });
    const names = await session.listDatabases();
    expect(names).toEqual(expect.arrayContaining([...HOSTILE, 'content', 'postgres']));
    expect(names).not.toContain('template0');
    expect(names).not.toContain('template1');
    for (const [i, name] of HOSTILE.entries()) {
      const file = await dump(await plan(session, name));
      await restore(srv, file, `hostile_restored_${i}`);
      // The marker holds the source database's own name: proves the right database was dumped.
      expect(await srv.sql(`SELECT i, encode(convert_to(name, 'UTF8'), 'hex') FROM marker`, `hostile_restored_${i}`)).toBe(`${i}|${hex(name)}`);
    }
    expect(existsSync('/tmp/apiscp-pwned')).toBe(false);
    await session.close();
  }, 120_000);

  test('round trip keeps schemas, sequences, large objects, unicode, views, triggers, bytea', async () => {
    const session = (await openOn(srv))!;
    const file = await dump(await plan(session, 'content'));
    await restore(srv, file, 'content_restored');
    const before = await fingerprint(srv, 'content');
    expect(before).toContain('large objects|2|');
    expect(before).toContain('public.Bestellübersicht|3|');
    expect(await fingerprint(srv, 'content_restored')).toBe(before);
    expect(await srv.sql(`SELECT length(data), md5(data) FROM blobs`, 'content_restored')).toBe(
      `256|${(await import('node:crypto')).createHash('md5').update(Buffer.from([...Array(256).keys()])).digest('hex')}`,
    );
    expect(await srv.sql(`SELECT nextval('shop.ticket')`, 'content_restored')).toBe('105');
    expect(await srv.sql(`INSERT INTO shop.orders (item) VALUES ('new') RETURNING id, audit`, 'content_restored')).toBe('1001|stamped');
    await session.close();
  }, 120_000);

  test('verification rejects a truncated custom dump (pg_restore --list alone would not)', async () => {
    const session = (await openOn(srv))!;
    const spec = await plan(session, 'content');
    const file = await dump(spec);
    await truncate(file, Math.floor((await stat(file)).size / 2));
    await expect(spec.checkFile(file, 'none')).rejects.toThrow(/failed verification/);
    // A compressed custom dump is verified through the decompressor.
    await dump(spec, 'gzip');
    await session.close();
  }, 60_000);

  test('globals export holds the roles with hashed passwords and its trailer', async () => {
    const session = (await openOn(srv))!;
    const specs = await session.planServerWide();
    expect(specs.map((s) => [s.object, s.format, s.extension, s.compressible])).toEqual([['globals', 'sql', '.sql', true]]);
    const file = await dump(specs[0]!, 'zstd');
    const text = (await run(cmd(whichSystem('zstd')!, ['-dcq', '--', file]))).stdout;
    expect(text).toMatch(/CREATE ROLE app_user;/);
    expect(text).toMatch(/ALTER ROLE app_user .*PASSWORD 'SCRAM-SHA-256\$/);
    expect(text).not.toContain(APP_PASSWORD);
    const cut = join(work, 'globals-cut.sql');
    await writeFile(cut, text.slice(0, text.length - 200));
    await expect(specs[0]!.checkFile(cut, 'none')).rejects.toThrow(/trailer is missing/);
    const off = await postgresqlKind.open({ loaded: loaded({ enabled: true, host: srv.socketDir, port: srv.port, dump_globals: false }), log: memoryLogger() });
    expect(await off!.planServerWide()).toEqual([]);
  }, 60_000);

  test('password role: PGPASSFILE in the environment, tools run as root, wrong password fails', async () => {
    const pgpass = join(work, 'pgpass');
    await writeFile(pgpass, `*:*:*:backup_admin:${ADMIN_PASSWORD}\n`, { mode: 0o600 });
    const session = (await openOn(srv, { user: 'backup_admin', password_file: pgpass }))!;
    const spec = await plan(session, 'content');
    expect(spec.command.uid).toBeUndefined();
    expect(spec.command.env?.PGPASSFILE).toBe(pgpass);
    expect(await session.listDatabases()).toContain('content');
    await dump(spec);
    const wrong = join(work, 'pgpass-wrong');
    await writeFile(wrong, `*:*:*:backup_admin:not-it\n`, { mode: 0o600 });
    await expect(openOn(srv, { user: 'backup_admin', password_file: wrong })).rejects.toThrow(/password authentication failed/);
    // auto never skips a server that refuses us (nor one that does not answer).
    await expect(openOn(srv, { enabled: 'auto', user: 'backup_admin', password_file: wrong })).rejects.toThrow(/password authentication failed/);
  }, 60_000);
});

describe('faults', () => {
  test('server stopped before the dump: open fails clearly (also under auto), a planned dump fails', async () => {
    const session = (await openOn(faulty))!;
    const spec = await plan(session, 'big');
    await faulty.stop();
    try {
      await expect(openOn(faulty)).rejects.toThrow(/cannot connect to PostgreSQL at .*: .*No such file or directory/);
      await expect(openOn(faulty)).rejects.toBeInstanceOf(BackupError);
      await expect(postgresqlKind.open({ loaded: loaded({ host: faulty.socketDir, port: faulty.port }), log: memoryLogger() })).rejects.toThrow(/cannot connect to PostgreSQL at /);
      const err = await pipeToFile([spec.command], join(work, 'never.dump')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as CommandError).message).toMatch(/pg_dump.*exited with 1/);
      expect((err as CommandError).stderrTail).toMatch(/connection to server on socket .* failed: No such file or directory/);
    } finally {
      await faulty.start();
    }
  }, 60_000);

  test('server stopped during a dump of a large database: CommandError, partial file fails verification', async () => {
    const session = (await openOn(faulty))!;
    const spec = await plan(session, 'big');
    const file = join(work, 'big-interrupted.dump');
    const started = Date.now();
    const dumping = pipeToFile([spec.command], file).catch((e: unknown) => e);
    // Stop once table data is flowing (the header and TOC are only a few kB).
    while (!existsSync(file) || (await stat(file)).size < 1_000_000) await new Promise((r) => setTimeout(r, 20));
    await faulty.stop();
    const err = await dumping;
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/pg_dump/);
    expect(Date.now() - started).toBeLessThan(30_000);
    await expect(spec.checkFile(file, 'none')).rejects.toThrow(/failed verification/);
    await faulty.start();
  }, 60_000);
});
