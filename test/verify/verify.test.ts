/**
 * `verify` and the nightly verification through the BUILT CLI, with real MariaDB and PostgreSQL
 * servers: dumps record the server's inventory, verify loads them into throwaway servers of the
 * same major version and compares, and fails naming the database when a file or a table is gone.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { VerifyState } from '../../lib/model/verify-state.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Servers } from '../../lib/throwaway/servers.js';
import { replaceDump } from '../helpers/dump-files.js';
import { EXPORT_SCOPE, sandboxPool, type Sandbox } from '../helpers/sandbox.js';

const SITES = {
  site1: { mysql: ['s1_wp'], pgsql: ['s1_pg'] },
  site2: { mysql: ['s2_shop'] },
};

let servers: Servers;
let hooks: { server: Server; url: string; pings: string[] };

async function startHeartbeatServer(): Promise<typeof hooks> {
  const pings: string[] = [];
  const server = createServer((req, res) => {
    pings.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.end('OK'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const address = server.address();
  return { server, pings, url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
}

const verifyState = (sb: Sandbox): VerifyState => JSON.parse(readFileSync(join(sb.stateDir, 'verify.json'), 'utf8')) as VerifyState;

/** Where this file's throwaway verify servers live (the postgres user must reach it: not below a 0700 root). */
const workDir = mkdtempSync('/var/tmp/asb-verify-test-');
chmodSync(workDir, 0o755);
const pool = sandboxPool({ sites: SITES, config: { verify: { work_dir: workDir } } });
const sandbox = pool.sandbox;

beforeAll(async () => {
  servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE s1_wp; USE s1_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world'), (3, 'again');
    CREATE TABLE log (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO log VALUES (1);
    CREATE VIEW v_posts AS SELECT id, title FROM posts;
    CREATE PROCEDURE p_count() SELECT COUNT(*) FROM posts;
    CREATE TRIGGER t_log AFTER INSERT ON posts FOR EACH ROW INSERT INTO log VALUES (NEW.id + 1000);
    CREATE EVENT e_tidy ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM log WHERE id > 1000;
    CREATE DATABASE s2_shop; USE s2_shop;
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=MyISAM;
    INSERT INTO items VALUES (1, 'widget'), (2, 'gadget');
    CREATE DATABASE \`odd 'name\`; USE \`odd 'name\`;
    CREATE TABLE \`t -1\` (id INT) ENGINE=InnoDB; INSERT INTO \`t -1\` VALUES (1), (2);
  `);
  await servers.postgres.sql('CREATE DATABASE s1_pg');
  await servers.postgres.sql(
    `CREATE TABLE notes (id int primary key, body text); INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 50) g;
     CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE VIEW v_notes AS SELECT * FROM notes;
     CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
     SELECT lo_from_bytea(0, 'large object');`,
    's1_pg',
  );
  // Row counts taken beside a MySQL dump are compared only for tables not written since the
  // second the dump started (UPDATE_TIME): let the seed's writes fall into an earlier second.
  await new Promise((r) => setTimeout(r, 1100));
  hooks = await startHeartbeatServer();
});

afterAll(async () => {
  hooks?.server.close();
  rmSync(workDir, { recursive: true, force: true });
  await pool.destroy();
});

describe('verify', () => {
  let sb: Sandbox;
  let runId: string;

  it('dumps record the server inventory: objects, large objects and exact rows of tables not written during the dump', async () => {
    sb = await sandbox({ config: { verify: { schedule: 'off' } } });
    const r = await sb.cli(['dump']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    runId = sb.latest()!;
    const byName = Object.fromEntries(sb.manifest(runId).entries.map((e) => [e.database ?? e.object, e]));
    expect(byName.s1_wp!.inventory).toMatchObject({
      objects: { tables: ['log', 'posts'], views: ['v_posts'], routines: ['PROCEDURE p_count'], triggers: ['t_log'], events: ['e_tidy'] },
      rows: { log: 1, posts: 3 },
      rowsFrom: 'beside',
    });
    expect(byName.s2_shop!.inventory?.rows).toEqual({ items: 2 });
    expect(byName["odd 'name"]!.inventory?.rows).toEqual({ 't -1': 2 });
    expect(byName.s1_pg!.inventory).toMatchObject({
      objects: { relations: ['r public.notes', 'v public.v_notes'], functions: ['f public.twice(integer)'], types: ['e public.mood'] },
      largeObjects: 1,
      rows: { 'public.notes': 50 },
      rowsFrom: 'snapshot',
    });
  });

  it('tables larger than verify.count_rows_max are not counted at dump time, and verify still checks them for presence', async () => {
    const small = await sandbox({ config: { verify: { schedule: 'off', count_rows_max: '1K' } } });
    expect((await small.cli(['dump'])).exitCode).toBe(0);
    const byName = Object.fromEntries(small.manifest(small.latest()!).entries.map((e) => [e.database ?? e.object, e]));
    expect(byName.s1_wp!.inventory?.rows).toEqual({});
    expect(byName.s1_wp!.inventory?.rowsNotCounted).toEqual({ log: 'larger than verify.count_rows_max: not counted', posts: 'larger than verify.count_rows_max: not counted' });
    expect(byName.s1_pg!.inventory?.rowsNotCounted).toEqual({ 'public.notes': 'larger than verify.count_rows_max: not counted' });
    const r = await small.cli(['verify', '--json']);
    expect(r.exitCode).toBe(0);
    const s1 = (JSON.parse(r.stdout) as { results: { database: string; outcome: string; notes?: string[] }[] }).results.find((x) => x.database === 's1_wp')!;
    expect(s1.outcome).toBe('ok');
    expect(s1.notes).toEqual(['rows not compared for 2 table(s), larger than verify.count_rows_max: not counted: log, posts']);
  });

  it('passes on good dumps: every database loaded into throwaway servers and matched', async () => {
    const r = await sb.cli(['verify', '--json']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as { runId: string; ok: boolean; results: { database: string; outcome: string }[] };
    expect(out.runId).toBe(runId);
    const outcomes = Object.fromEntries(out.results.map((x) => [x.database, x.outcome]));
    expect(outcomes).toMatchObject({ s1_wp: 'ok', s2_shop: 'ok', "odd 'name": 'ok', s1_pg: 'ok', postgres: 'ok', '(users)': 'ok', '(globals)': 'ok' });
    const state = verifyState(sb);
    expect(state.databases['mysql:s1_wp']?.lastVerifiedAt).toBeDefined();
    expect(state.lastRun).toMatchObject({ runId, trigger: 'manual', failed: 0, errors: 0 });
    // The throwaway servers are gone.
    expect(readdirSync(workDir)).toEqual([]);
  });

  it('fails with exit 9 naming the database whose file no longer matches its sha256', async () => {
    const entry = sb.manifest(runId).entries.find((e) => e.database === 's2_shop')!;
    const file = join(sb.dumpsDir, runId, entry.path!);
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    replaceDump(join(sb.dumpsDir, runId), 's2_shop', bytes, { keepManifestHash: true });
    const r = await sb.cli(['verify', '--run', runId]);
    expect(r.exitCode).toBe(9);
    expect(r.stderr).toMatch(/FAILED: mysql site2\/s2_shop: .*sha256 does not match the manifest/);
    expect(r.stderr).not.toMatch(/FAILED: .*s1_wp/);
    expect(verifyState(sb).databases['mysql:s2_shop']).toMatchObject({ outcome: 'failed', runId });
  });

  it('fails naming the database and the table when a dump loads but lost a table', async () => {
    const entry = sb.manifest(runId).entries.find((e) => e.database === 's1_wp')!;
    const file = join(sb.dumpsDir, runId, entry.path!);
    const sql = execFileSync('zstd', ['-dc', file], { encoding: 'utf8' });
    // Everything mariadb-dump writes for table `log`, from its structure comment to the next one.
    const cut = sql.replace(/--\n-- Table structure for table `log`[\s\S]*?(?=--\n-- Table structure for table `posts`)/, '');
    expect(cut).not.toBe(sql);
    expect(cut).toMatch(/-- Dump completed/);
    replaceDump(join(sb.dumpsDir, runId), 's1_wp', execFileSync('zstd', ['-q', '-c'], { input: cut }), { keepManifestHash: false });
    const r = await sb.cli(['verify']);
    expect(r.exitCode).toBe(9);
    expect(r.stderr).toMatch(/FAILED: mysql site1\/s1_wp: table missing after load: 'log'/);
    const state = verifyState(sb);
    expect(state.databases['mysql:s1_wp']?.outcome).toBe('failed');
    expect(state.databases['mysql:s1_wp']?.problems[0]).toMatch(/'log'/);
  });

  it('SIGTERM mid-verify: exit 143, the throwaway servers stopped and removed', async () => {
    const child = sb.spawnCli(['verify']);
    // Wait until a throwaway MariaDB is up (its socket exists), then cancel.
    const started = Date.now();
    const serverUp = (): boolean =>
      readdirSync(workDir).some((d) => {
        const dir = join(workDir, d);
        return existsSync(dir) && readdirSync(dir).some((n) => n.startsWith('asb-my-') && existsSync(join(dir, n, 's.sock')));
      });
    while (!serverUp()) {
      if (Date.now() - started > 60_000) throw new Error('no throwaway server appeared');
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGTERM');
    const r = await child;
    expect(r.exitCode).toBe(143);
    expect(readdirSync(workDir)).toEqual([]);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).not.toContain(workDir);
  });

  it('status is CRITICAL naming the failed databases; the Prometheus textfile shows each database', async () => {
    sb.writeConfig({ verify: { schedule: 'off', work_dir: workDir }, monitor: { prometheus_textfile: '/var/lib/node_exporter/apiscp.prom' } });
    await sb.cli(['verify', '--sample', '1', '--run', runId]); // refreshes the textfile (postgres, checked longest ago)
    const r = await sb.cli(['status']);
    expect(r.exitCode).toBe(2); // Nagios CRITICAL
    const headline = r.stdout.split('\n')[0]!;
    expect(headline).toMatch(/^CRITICAL: verify failed for /);
    expect(headline).toContain("mysql 's1_wp'");
    expect(headline).toContain("mysql 's2_shop'");
    const prom = readFileSync(join(sb.root, 'var/lib/node_exporter/apiscp.prom'), 'utf8');
    expect(prom).toMatch(/apiscp_backup_verify_failed\{engine="none",kind="mysql",database="s1_wp",site="site1"\} 1/);
    expect(prom).toMatch(/apiscp_backup_verify_failed\{engine="none",kind="postgresql",database="s1_pg",site="site1"\} 0/);
    const s1pg = Number(/apiscp_backup_verify_last_success_timestamp_seconds\{[^}]*database="s1_pg"[^}]*\} (\S+)/.exec(prom)?.[1]);
    expect(s1pg).toBeGreaterThan(Date.now() / 1000 - 600);
  });

  it('the Bacula watchdog verifies the newest run when due and pings the failure heartbeat', async () => {
    sb.writeConfig({ engine: 'bacula', verify: { schedule: 'nightly', sample: 10, work_dir: workDir }, monitor: { heartbeat: { failure: `${hooks.url}/fail`, success: `${hooks.url}/ok` } } });
    hooks.pings.length = 0;
    const r = await sb.cli(['nightly']);
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toMatch(/verify failed for mysql 's1_wp'/);
    expect(hooks.pings).toEqual(['/fail']);
    expect(verifyState(sb).lastRun).toMatchObject({ trigger: 'nightly', runId, failed: 2 });
  });
});

describe('nightly verification', () => {
  it('runs after the backup, verify.sample databases a night, and covers every database in the stated number of nights', async () => {
    const sb = await sandbox({ scopes: { [EXPORT_SCOPE]: false }, config: { verify: { schedule: 'nightly', sample: 2 }, monitor: { heartbeat: { success: `${hooks.url}/ok`, failure: `${hooks.url}/fail` } } } });
    const seen = new Map<string, number>();
    hooks.pings.length = 0;
    // 5 databases (s1_wp, s2_shop, odd 'name, s1_pg, postgres), 2 a night: all within 3 nights.
    for (let night = 1; night <= 3; night++) {
      const r = await sb.cli(['nightly']);
      expect(r.stderr).toBe('');
      expect(r.exitCode).toBe(0);
      const state = verifyState(sb);
      expect(state.lastRun).toMatchObject({ trigger: 'nightly', runId: sb.latest(), failed: 0, errors: 0 });
      const tonight = Object.values(state.databases).filter((d) => d.runId === sb.latest() && !d.database.startsWith('('));
      expect(tonight.length).toBe(2);
      for (const d of tonight) seen.set(`${d.kind}:${d.database}`, night);
      // The next night: move the last verification a day back, as the clock would.
      writeFileSync(join(sb.stateDir, 'verify.json'), JSON.stringify({ ...state, lastRun: { ...state.lastRun, at: new Date(Date.now() - 86_400_000).toISOString() } }));
    }
    expect([...seen.keys()].sort()).toEqual(['mysql:odd \'name', 'mysql:s1_wp', 'mysql:s2_shop', 'postgresql:postgres', 'postgresql:s1_pg']);
    // One heartbeat per night, after the verification.
    expect(hooks.pings).toEqual(['/ok', '/ok', '/ok']);
    const status = await sb.cli(['status']);
    expect(status.exitCode).toBe(0);
    expect(status.stdout).toMatch(/verify: nightly, 2 per verification, every database within 3 nights; 5 of 5 verified/);
    // Last verified per database: the oldest first (the rotation's next), all of them in --json.
    expect(status.stdout).toMatch(/verify: least recently verified: (mysql|postgresql) '[^']+' 20\d\d-/);
    const json = JSON.parse((await sb.cli(['status', '--json'])).stdout) as { verify: { databases: Record<string, { lastVerifiedAt?: string }> } };
    expect(Object.keys(json.verify.databases).filter((k) => json.verify.databases[k]!.lastVerifiedAt).sort()).toEqual(
      expect.arrayContaining(['mysql:odd \'name', 'mysql:s1_wp', 'mysql:s2_shop', 'postgresql:postgres', 'postgresql:s1_pg']),
    );
  });

  it('a verification that cannot run (verify.work_dir missing) warns in the cron output and status; the backup stands', async () => {
    const sb = await sandbox({ scopes: { [EXPORT_SCOPE]: false }, config: { verify: { schedule: 'nightly', work_dir: '/nonexistent-asb-verify' } } });
    const r = await sb.cli(['nightly']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/finished with warnings/);
    expect(r.stderr).toMatch(/verification could not run: verify\.work_dir \/nonexistent-asb-verify: cannot create .*ENOENT/);
    const status = await sb.cli(['status']);
    expect(status.exitCode).toBe(1); // Nagios WARNING
    expect(status.stdout).toMatch(/^WARNING: verification could not run/);
    expect((JSON.parse(readFileSync(sb.statusFile, 'utf8')) as { warnings: { code: string }[] }).warnings.map((w) => w.code)).toEqual(['verify-not-checked']);
    const manual = await sb.cli(['verify']);
    expect(manual.exitCode).toBe(2);
    expect(manual.stderr).toMatch(/verify\.work_dir \/nonexistent-asb-verify/);
  });

  it('a verification that is not due does not run again the same night', async () => {
    const sb = await sandbox({ scopes: { [EXPORT_SCOPE]: false }, config: { verify: { schedule: 'nightly', sample: 1 } } });
    expect((await sb.cli(['nightly'])).exitCode).toBe(0);
    const first = verifyState(sb).lastRun!;
    expect((await sb.cli(['nightly'])).exitCode).toBe(0);
    expect(verifyState(sb).lastRun).toEqual(first);
  });
});
