import { existsSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import type { Manifest } from '../../lib/model/manifest.js';
import { databaseEntries, loadDump } from '../../lib/demo/db-checks.js';
import { assertBuilt, CLI, cli, mysqlFingerprint, NODE, pgFingerprint, readStatus, seedMysql, seedPostgres } from '../helpers/e2e.js';
import { setPanelSites, startFleet, type Fleet } from '../harness/fleet.js';
import { waitFor } from '../helpers/sandbox.js';
import { acquireLock } from '../../lib/lock/lock.js';
import { listTestNamespaces, NETNS_PREFIX } from '../harness/netns.js';

// One Bacula director + storage daemon and three ApisCP servers, each in its own network
// namespace with its own bacula-fd, MariaDB (PostgreSQL on s1), site tree and state; the built
// CLI is every server's hook. Addresses exist only inside the namespaces (10.213.77.0/24).

// s3 has one site of its own: s1's site2 moves there (the migration tests).
const SERVERS = [{ name: 's1', postgres: true }, { name: 's2' }, { name: 's3', postgres: true, sites: 1 }] as const;
const NAMES = SERVERS.map((s) => s.name);
/** What each server's sites own: siteN_ prefixes, as ApisCP names them. */
const SEEDS: Record<string, Record<string, { mysql: string[]; pgsql: string[] }>> = {
  s1: { site1: { mysql: ['site1_s1shop'], pgsql: [] }, site2: { mysql: ['site2_s1blog'], pgsql: ['site2_s1pg'] } },
  s2: { site1: { mysql: ['site1_s2shop'], pgsql: [] }, site2: { mysql: ['site2_s2blog'], pgsql: [] } },
  s3: { site1: { mysql: ['site1_s3shop'], pgsql: ['site1_s3pg'] } },
};
const seededNames = (server: string): string[] => Object.values(SEEDS[server]!).flatMap((s) => [...s.mysql, ...s.pgsql]);
let fleet: Fleet;
/** s1's databases at backup time (they do not change during the file). */
const s1Original: Record<string, Record<string, string>> = {};

beforeAll(async () => {
  assertBuilt();
  // A namespace a crashed run left behind (its owner pid is gone): the next run removes it.
  const deadPid = [4_194_301, 4_194_302, 4_194_303].find((p) => !existsSync(`/proc/${p}`))!;
  await run(cmd('ip', ['netns', 'add', `${NETNS_PREFIX}${deadPid}-old`]));
  const t = Date.now();
  fleet = await startFleet(SERVERS);
  expect((await listTestNamespaces()).filter((n) => n.includes(`${deadPid}-`))).toEqual([]);
  await Promise.all(
    fleet.servers.map(async (s) => {
      for (const site of Object.values(SEEDS[s.name]!)) {
        for (const db of site.mysql) await seedMysql(s.my, db);
        for (const db of site.pgsql) await seedPostgres(s.pg!, db);
      }
      setPanelSites(s, SEEDS[s.name]!);
    }),
  );
  const s1 = fleet.server('s1');
  s1Original.site1_s1shop = await mysqlFingerprint(s1.my, 'site1_s1shop');
  s1Original.site2_s1blog = await mysqlFingerprint(s1.my, 'site2_s1blog');
  s1Original.site2_s1pg = await pgFingerprint(s1.pg!, 'site2_s1pg');
  console.info(`fleet of ${fleet.servers.length} servers up in ${Date.now() - t} ms`);
  // Each server's MariaDB and PostgreSQL run inside that server's network namespace.
  for (const s of fleet.servers) {
    const netns = `net:[${statSync(`/run/netns/${s.netns}`).ino}]`;
    expect(readlinkSync(`/proc/${s.my.pid}/ns/net`), `${s.name} mariadbd`).toBe(netns);
    if (s.pg) expect(readlinkSync(`/proc/${readFileSync(`${s.pg.dataDir}/postmaster.pid`, 'utf8').split('\n')[0]}/ns/net`), `${s.name} postgres`).toBe(netns);
  }
  // The test network exists only inside the namespaces: the host has no address on it.
  expect((await run(cmd('ip', ['-4', 'addr', 'show']))).stdout).not.toContain(fleet.director.address.replace(/\.\d+$/, '.'));
}, 120_000);

afterAll(async () => {
  const t = Date.now();
  await fleet?.stop();
  console.info(`fleet stopped in ${Date.now() - t} ms`);
  expect(await listTestNamespaces(process.pid)).toEqual([]);
}, 60_000);

// Bounded by its own timeouts, not the suite's: a hung daemon fails the test within these.
const LIMIT = { timeout: 90_000 };

describe('one director, three ApisCP servers in their own network namespaces', LIMIT, () => {
  test('every server\'s Full job runs at the same time as the others, each gated by its own hook', async () => {
    const t = Date.now();
    // Hold every server's run lock: each hook waits for it, so the director must have all three
    // jobs running at once (a job here lasts ~1 s, less than the director's 2 s queue poll).
    const locks = await Promise.all(fleet.servers.map((s) => acquireLock(s.loaded.paths.lockPath, { waitMs: 1000, command: 'fleet test' })));
    let ids = new Map<string, number>();
    try {
      ids = await fleet.queueJobs(NAMES, 'Full');
      const running = await waitFor('all three jobs running', async () => {
        const st = await fleet.bconsole('status dir');
        const lines = st.split('\n').filter((l) => /-ApisCP\s+is running/.test(l));
        return lines.length === 3 && lines;
      }, 60_000, 200);
      expect(running.map((l) => /(s\d)-ApisCP/.exec(l)![1]).sort()).toEqual(NAMES);
    } finally {
      for (const l of locks) await l.release();
    }
    const jobs = await fleet.waitJobs(ids);
    console.info(`3 concurrent Full jobs in ${Date.now() - t} ms`);
    for (const n of NAMES) expect(jobs.get(n)!.status, jobs.get(n)!.log).toBe('T');
    const states = fleet.servers.map((s) => readStatus(s.loaded));
    for (const [i, s] of fleet.servers.entries()) {
      expect(states[i], s.name).toMatchObject({ status: 'ok', trigger: 'hook', level: 'Full', job: { name: s.job, id: String(jobs.get(s.name)!.jobId) }, backup: { status: 'ok' } });
      const dumped = (states[i]!.dumps.databases as { database: string | null; status: string }[]).filter((d) => d.status === 'ok').map((d) => d.database);
      expect(states[i]!.dumps.failed, s.name).toBe(0);
      expect(dumped, s.name).toEqual(expect.arrayContaining(seededNames(s.name)));
      // Each server's own panel (stand-in) says which site owns which database.
      const owner = Object.fromEntries((states[i]!.dumps.databases as { database: string; site: string }[]).map((d) => [d.database, d.site]));
      for (const [site, dbs] of Object.entries(SEEDS[s.name]!)) for (const db of [...dbs.mysql, ...dbs.pgsql]) expect(owner[db], `${s.name} ${db}`).toBe(site);
    }
    // Concurrent: every pre-backup hook started before the first job's post-backup hook ended.
    const lastStart = Math.max(...states.map((st) => Date.parse(st.startedAt)));
    const firstEnd = Math.min(...states.map((st) => Date.parse(st.finishedAt)));
    expect(lastStart).toBeLessThan(firstEnd);
    // Each job holds its own server's files only (every server has the same paths: its dumps tell them apart).
    for (const s of fleet.servers) {
      const files = await fleet.bconsole(`list files jobid=${jobs.get(s.name)!.jobId}`);
      expect(files).toContain(`${s.common}/var/backup/apiscp-backup/`);
      expect(files).toContain(`/site1_${s.name}shop.sql.zst`);
      for (const other of fleet.servers.filter((o) => o !== s)) expect(files).not.toContain(`/site1_${other.name}shop.sql`);
    }
  });

  test('a restore onto the same server brings back its tree with ACLs and xattrs across the network', async () => {
    const s = fleet.server('s3');
    const where = `${fleet.base}/restore-s3`;
    const out = await fleet.bconsole(`restore client=${s.client} fileset=${s.job} where=${where} select current all done yes`);
    const id = Number(/JobId=(\d+)/.exec(out)?.[1]);
    const r = (await fleet.bconsole(`wait jobid=${id}\nllist jobid=${id}`));
    expect(/jobstatus:\s*(\S)/i.exec(r)?.[1], r).toBe('T');
    const back = Object.fromEntries(await snapshotTree(`${where}${s.common}`, s.tree.included));
    expect(back).toEqual(Object.fromEntries(await snapshotTree(s.root, s.tree.included)));
  });

  test('a server whose MariaDB is stopped fails only its own job (f); the others succeed (T)', async () => {
    const s2 = fleet.server('s2');
    await s2.my.stop();
    try {
      const jobs = await fleet.runJobs(NAMES, 'Incremental');
      expect(jobs.get('s2')!.status, jobs.get('s2')!.log).toBe('f');
      expect(jobs.get('s2')!.log).toMatch(/RunScript failed|BeforeJob returned non-zero status/i);
      for (const n of ['s1', 's3']) expect(jobs.get(n)!.status, jobs.get(n)!.log).toBe('T');
      expect(readStatus(s2.loaded)).toMatchObject({ status: 'failed', backup: { status: 'failed' } });
      expect(readStatus(fleet.server('s1').loaded)).toMatchObject({ status: 'ok', level: 'Incremental', chain: { incrementalsSince: 1 } });
    } finally {
      await s2.my.start();
    }
  });
});

describe('migration: server s1\'s backup restored onto server s3', LIMIT, () => {
  test('Bacula restoreclient across namespaces: site2\'s tree with ACLs and xattrs, and its databases under s3\'s own names', async () => {
    const [s1, s3] = [fleet.server('s1'), fleet.server('s3')];
    const staging = `${s3.root}/var/tmp/migrate-s1`;
    // The director sends s1's data (from the storage daemon) to s3's file daemon: s1 takes no part.
    const out = await fleet.bconsole(`restore client=${s1.client} restoreclient=${s3.client} fileset=${s1.job} where=${staging} select current all done yes`);
    const id = Number(/JobId=(\d+)/.exec(out)?.[1]);
    expect(id, out).toBeGreaterThan(0);
    const listed = await fleet.bconsole(`wait jobid=${id}\nllist jobid=${id}`);
    expect(/jobstatus:\s*(\S)/i.exec(listed)?.[1], listed).toBe('T');
    expect(listed).toMatch(new RegExp(`clientname:\\s*${s3.client}`, 'i'));

    // Files: site2 of s1 as it was backed up (owners by number, modes, ACLs, xattrs, whiteouts).
    const site2 = s1.tree.included.filter((p) => p.startsWith('home/virtual/site2/'));
    expect(site2.length).toBeGreaterThan(5);
    expect(Object.fromEntries(await snapshotTree(`${staging}${s1.common}`, site2))).toEqual(Object.fromEntries(await snapshotTree(s1.root, site2)));

    // Databases: s1's site2 owns site2_s1blog (MariaDB) and site2_s1pg (PostgreSQL). On s3 the
    // panel created the site as site7 with prefix "site7_": the name after the prefix is kept.
    const runDir = `${staging}${s1.common}/var/backup/apiscp-backup/latest`;
    const manifest = JSON.parse(readFileSync(`${runDir}/manifest.json`, 'utf8')) as Manifest;
    const mapped = (db: string): string => db.replace(/^site2_/, 'site7_');
    const site2Dumps = databaseEntries(manifest).filter((e) => e.database?.startsWith('site2_'));
    expect(site2Dumps.map((e) => `${e.kind}:${e.database}`).sort()).toEqual(['mysql:site2_s1blog', 'postgresql:site2_s1pg']);
    for (const e of site2Dumps) await loadDump(e, runDir, { mysql: s3.my, postgresql: s3.pg }, mapped(e.database!));
    expect(await mysqlFingerprint(s3.my, 'site7_s1blog')).toEqual(s1Original.site2_s1blog);
    expect(await pgFingerprint(s3.pg!, 'site7_s1pg')).toEqual(s1Original.site2_s1pg);
    // s3's own databases are untouched.
    expect(await s3.my.sql('SHOW DATABASES')).toMatch(/site1_s3shop\n/);
  });
});

describe('migration with `restore site --from-client`', LIMIT, () => {
  test('on s3, `restore site site2 --from-client s1-fd --in-place`: s1\'s site2 files (owners, modes, ACLs, xattrs) and databases arrive as backed up', async () => {
    const [s1, s3] = [fleet.server('s1'), fleet.server('s3')];
    // The panel on s3 created site2 (empty; same id and prefix as on s1).
    for (const d of ['shadow', 'info']) mkdirSync(`${s3.root}/home/virtual/site2/${d}`, { recursive: true });
    setPanelSites(s3, { ...SEEDS.s3, site2: { mysql: [], pgsql: [] } });
    const site2 = s1.tree.included.filter((p) => p.startsWith('home/virtual/site2/'));
    const c = s3.inside(cmd(NODE, [CLI, '--config', s3.configFile, 'restore', 'site', 'site2', '--from-client', s1.client, '--in-place']));
    const t = Date.now();
    const r = await cli(c.args, { file: c.file, env: { ...process.env, ...s3.env } as Record<string, string> });
    console.info(`restore site across servers: ${Date.now() - t} ms`);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/database 'site2_s1blog': restored/);
    expect(Object.fromEntries(await snapshotTree(s3.root, site2))).toEqual(Object.fromEntries(await snapshotTree(s1.root, site2)));
    expect(await mysqlFingerprint(s3.my, 'site2_s1blog')).toEqual(s1Original.site2_s1blog);
    expect(await pgFingerprint(s3.pg!, 'site2_s1pg')).toEqual(s1Original.site2_s1pg);
    expect(await s3.my.sql('SHOW DATABASES')).toMatch(/site1_s3shop\n/);
  });
});

/** `apiscp-backup fleet status` run on the director host: inside its namespace, with its own config. */
function directorConfig(extra: Record<string, unknown> = {}): string {
  const root = `${fleet.base}/director`;
  const file = `${root}/etc/apiscp-backup/${Object.keys(extra).join('-') || 'config'}.yaml`;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({
    paths: { root }, panel: { enabled: false }, databases: { mysql: { enabled: false }, postgresql: { enabled: false } },
    bacula: { bconsole_config: (extra.bconsole_config as string | undefined) ?? fleet.director.bconsoleConfigFile },
    fleet: { exclude: ['dir-fd'], prometheus_textfile: '/var/lib/node_exporter/apiscp_fleet.prom', ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'bconsole_config')) },
  }));
  return file;
}

async function fleetStatus(config: string, json = false): Promise<{ code: number | null; out: string; err: string }> {
  const c = fleet.director.inside(cmd(NODE, [CLI, '--config', config, ...(json ? ['--json'] : []), 'fleet', 'status']));
  const r = await cli(c.args, { file: c.file });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

describe('fleet status on the director host', LIMIT, () => {
  test('a failed client: exit 6, CRITICAL names it and why; the others OK; JSON and the Prometheus textfile per client', async () => {
    const config = directorConfig();
    const text = await fleetStatus(config);
    expect(text.code, text.err).toBe(6);
    const [first, ...rest] = text.out.trim().split('\n');
    expect(first).toMatch(/^CRITICAL: 1 failed, 0 stale of 3 clients: s2-fd \(job \d+ \(Incremental\) failed: Client "s2-fd" RunScript failed: .*mysql.*cannot connect/);
    expect(first).toMatch(/\| clients=3 failed=1;;1;0 stale=0;;1;0 /);
    expect(rest.find((l) => l.startsWith('s1-fd:'))).toMatch(/^s1-fd: OK, last good Incremental job \d+ \d+[sm] ago .*restore chain 2/);
    expect(rest.find((l) => l.startsWith('s2-fd:'))).toMatch(/^s2-fd: FAILED, .*last good Full job \d+ .*restore chain 1/);

    const j = await fleetStatus(config, true);
    expect(j.code).toBe(6);
    const report = JSON.parse(j.out) as { status: string; clients: Record<string, any>[] };
    expect(report.status).toBe('critical');
    const by = Object.fromEntries(report.clients.map((c) => [c.client, c]));
    expect(Object.keys(by).sort()).toEqual(['s1-fd', 's2-fd', 's3-fd']);
    // s1: Full then Incremental → a restore replays 2; s2: Full, then its Incremental failed → 1.
    expect(by['s1-fd']).toMatchObject({ status: 'ok', lastGood: { level: 'Incremental', job: 's1-ApisCP' }, restoreChainLength: 2, lastFailure: null });
    expect(by['s2-fd']).toMatchObject({ status: 'failed', lastGood: { level: 'Full' }, restoreChainLength: 1, lastFailure: { level: 'Incremental', status: 'f' } });
    expect(by['s2-fd'].lastFailure.reason).toMatch(/RunScript failed: .*cannot connect/);
    expect(by['s1-fd'].lastGood.ageSeconds).toBeLessThan(120);

    const prom = readFileSync(`${fleet.base}/director/var/lib/node_exporter/apiscp_fleet.prom`, 'utf8');
    expect(prom).toContain('apiscp_backup_fleet_client_failed{client="s2-fd"} 1');
    expect(prom).toContain('apiscp_backup_fleet_client_failed{client="s1-fd"} 0');
    expect(prom).toContain('apiscp_backup_fleet_restore_chain_length{client="s1-fd"} 2');
    expect(prom).toMatch(/apiscp_backup_fleet_last_success_timestamp_seconds\{client="s3-fd"\} \d{10}\n/);
    expect(prom).not.toContain('dir-fd');
  });

  test('the failed server backs up again: OK, exit 0, its failure kept as history; stale when max_age passes', async () => {
    const again = await fleet.runJobs(['s2'], 'Incremental');
    expect(again.get('s2')!.status, again.get('s2')!.log).toBe('T');
    const ok = await fleetStatus(directorConfig());
    expect(ok.code, ok.out + ok.err).toBe(0);
    expect(ok.out).toMatch(/^OK: 3 clients backed up/);
    // Full, (failed Incremental: not in the chain), Incremental → 2.
    expect(ok.out).toMatch(/s2-fd: OK, last good Incremental job \d+ .*restore chain 2, last failure job \d+ /);

    // A director that refuses us is an engine error (5) that says so, never a verdict on the clients.
    const badConsole = `${fleet.base}/director/etc/bconsole-wrong.conf`;
    writeFileSync(badConsole, readFileSync(fleet.director.bconsoleConfigFile, 'utf8').replace(/Password = ".*"/, 'Password = "wrong"'), { mode: 0o600 });
    const t = Date.now();
    const refused = await fleetStatus(directorConfig({ bconsole_config: badConsole }));
    console.info(`fleet status against a refusing director: exit ${refused.code} in ${Date.now() - t} ms`);
    expect(refused.code).toBe(5);
    expect(refused.out).toBe('');
    expect(refused.err).toMatch(/bconsole could not connect or log in to the director \(.*bconsole-wrong\.conf; .*\): Connecting to Director 10\.213\.77\.1:9101/);

    await new Promise((r) => setTimeout(r, 2100));
    const stale = await fleetStatus(directorConfig({ max_age: '1s' }));
    expect(stale.code).toBe(6);
    expect(stale.out).toMatch(/^CRITICAL: 0 failed, 3 stale of 3 clients: s1-fd \(last good backup \d+[sm] ago, older than max_age 1s\)/);
  });
});
