import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cmd } from '../lib/run/command.js';
import { run } from '../lib/run/run.js';
import { snapshotTree } from '../lib/sandbox/apiscp-tree.js';
import { assertBuilt, readStatus, seedMysql, seedPostgres } from './helpers/e2e.js';
import { startFleet, type Fleet } from './harness/fleet.js';
import { listTestNamespaces } from './harness/netns.js';

// One Bacula director + storage daemon and three ApisCP servers, each in its own network
// namespace with its own bacula-fd, MariaDB (PostgreSQL on s1), site tree and state; the built
// CLI is every server's hook. Addresses exist only inside the namespaces (10.213.77.0/24).

const SERVERS = [{ name: 's1', postgres: true }, { name: 's2' }, { name: 's3' }] as const;
const NAMES = SERVERS.map((s) => s.name);
let fleet: Fleet;

beforeAll(async () => {
  assertBuilt();
  const t = Date.now();
  fleet = await startFleet(SERVERS);
  await Promise.all(
    fleet.servers.map(async (s) => {
      await seedMysql(s.my, `site1_${s.name}shop`);
      await seedMysql(s.my, `site2_${s.name}blog`);
      if (s.pg) await seedPostgres(s.pg, `site2_${s.name}pg`);
    }),
  );
  console.info(`fleet of ${fleet.servers.length} servers up in ${Date.now() - t} ms`);
  // The test network exists only inside the namespaces: the host has no address on it.
  expect((await run(cmd('ip', ['-4', 'addr', 'show']))).stdout).not.toContain(fleet.director.address.replace(/\.\d+$/, '.'));
}, 120_000);

afterAll(async () => {
  const t = Date.now();
  await fleet?.stop();
  console.info(`fleet stopped in ${Date.now() - t} ms`);
  expect(await listTestNamespaces(process.pid)).toEqual([]);
}, 60_000);

describe('one director, three ApisCP servers in their own network namespaces', () => {
  test('every server\'s Full job runs at the same time as the others, each gated by its own hook', async () => {
    const t = Date.now();
    const jobs = await fleet.runJobs(NAMES, 'Full');
    console.info(`3 concurrent Full jobs in ${Date.now() - t} ms`);
    for (const n of NAMES) expect(jobs.get(n)!.status, jobs.get(n)!.log).toBe('T');
    const states = fleet.servers.map((s) => readStatus(s.loaded));
    for (const [i, s] of fleet.servers.entries()) {
      expect(states[i], s.name).toMatchObject({ status: 'ok', trigger: 'hook', level: 'Full', job: { name: s.job, id: String(jobs.get(s.name)!.jobId) }, backup: { status: 'ok' } });
      const dumped = (states[i]!.dumps.databases as { database: string | null; status: string }[]).filter((d) => d.status === 'ok').map((d) => d.database);
      expect(states[i]!.dumps.failed, s.name).toBe(0);
      expect(dumped, s.name).toEqual(expect.arrayContaining([`site1_${s.name}shop`, `site2_${s.name}blog`, ...(s.pg ? [`site2_${s.name}pg`] : [])]));
    }
    // Concurrent: every pre-backup hook started before the first job's post-backup hook ended.
    const lastStart = Math.max(...states.map((st) => Date.parse(st.startedAt)));
    const firstEnd = Math.min(...states.map((st) => Date.parse(st.finishedAt)));
    expect(lastStart).toBeLessThan(firstEnd);
    // Each job holds its own server's files only.
    for (const s of fleet.servers) {
      const files = await fleet.bconsole(`list files jobid=${jobs.get(s.name)!.jobId}`);
      expect(files).toContain(`${s.root}/var/backup/apiscp-backup/`);
      for (const other of fleet.servers.filter((o) => o !== s)) expect(files).not.toContain(`${other.root}/`);
    }
  });

  test('a restore onto the same server brings back its tree with ACLs and xattrs across the network', async () => {
    const s = fleet.server('s3');
    const where = `${fleet.base}/restore-s3`;
    const out = await fleet.bconsole(`restore client=${s.client} fileset=${s.job} where=${where} select current all done yes`);
    const id = Number(/JobId=(\d+)/.exec(out)?.[1]);
    const r = (await fleet.bconsole(`wait jobid=${id}\nllist jobid=${id}`));
    expect(/jobstatus:\s*(\S)/i.exec(r)?.[1], r).toBe('T');
    const back = Object.fromEntries(await snapshotTree(`${where}${s.root}`, s.tree.included));
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
