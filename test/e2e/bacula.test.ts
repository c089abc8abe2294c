import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { run } from '../../lib/proc/run.js';
import { cmd } from '../../lib/proc/command.js';
import { isRunning } from '../helpers/processes.js';
import { buildApiscpTree, snapshotTree, type TreeInfo } from '../../lib/demo/apiscp-tree.js';
import { startBacula, type BaculaHarness } from '../harness/bacula.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import {
  cli, CLI, CRON_PATH, loadRun, NODE, readStatus, rmrf, stopServers, writeConfig, expectSameDatabases, seededServers,
} from '../helpers/e2e.js';
import type { Servers } from '../../lib/throwaway/servers.js';

// Bacula with the REAL hook: the director fragment comes from `apiscp-backup bacula config`,
// the file daemon runs `node dist/scripts/apiscp-backup.js hook pre-backup …` by execvp before
// reading the files, and `hook post-backup --status "%e"` after. Real daemons, real databases.

const base = mkdtempSync(join(tmpdir(), 'e2e-bacula-'));
chmodSync(base, 0o755); // pg_restore (as postgres) reads scratch copies below it
const root = join(base, 'root');
let servers: Servers;
let fresh: Servers;
let h: BaculaHarness;
let tree: TreeInfo;
let config: string;
let loaded: LoadedConfig;
let original: Record<string, Record<string, string>> = {};
let restores = 0;

beforeAll(async () => {
  ({ servers, fresh, original } = await seededServers());
  tree = await buildApiscpTree(root, { sites: 2 });
  config = writeConfig(join(base, 'etc/config.yaml'), { root, servers, engine: 'bacula' });
  loaded = loadConfig({ file: config });
  const fragment = await cli(['--config', config, 'bacula', 'config', '--node', NODE, '--entry', CLI]);
  expect(fragment.code, fragment.stderr).toBe(0);
  expect(fragment.stdout).toContain(`Command = "${NODE} ${CLI} --config ${config} hook pre-backup --engine bacula --level %l`);
  h = await startBacula({ extraDirectorConfig: fragment.stdout });
});

afterAll(async () => {
  await h?.stop();
  await Promise.all([stopServers(servers), stopServers(fresh)]);
  rmrf(base);
});

async function job(level: string): Promise<{ jobId: number; status: string; log: string }> {
  const t = Date.now();
  const r = await h.runJob('ApisCP', level);
  console.info(`bacula ${level} job ${r.jobId}: ${r.status} in ${Date.now() - t} ms`);
  return r;
}

describe('Bacula job ApisCP with the real hooks', () => {
  test('Full → T; the restored files match and the restored dumps load into fresh databases', async () => {
    const r = await job('Full');
    expect(r.status, r.log).toBe('T');
    const st = readStatus(loaded);
    expect(st).toMatchObject({
      status: 'ok', engine: 'bacula', trigger: 'hook', level: 'Full',
      job: { name: 'ApisCP', id: String(r.jobId) }, backup: { status: 'ok', detail: 'OK' }, dumps: { failed: 0 },
    });
    expect(st.chain).toMatchObject({ incrementalsSince: 0 });
    expect(st.chain.lastFullAt).toBeTruthy();

    const where = join(base, `restore-${++restores}`);
    const t = Date.now();
    const rr = await h.restore({ fileset: 'ApisCP', where, jobIds: [r.jobId] });
    console.info(`bacula restore: ${rr.status} in ${Date.now() - t} ms`);
    expect(rr.status, rr.log).toBe('T');
    const restoredRoot = join(where, root);
    expect(Object.fromEntries(await snapshotTree(restoredRoot, tree.included))).toEqual(Object.fromEntries(await snapshotTree(root, tree.included)));
    for (const never of tree.excluded) expect(existsSync(join(restoredRoot, never)), never).toBe(false);

    const runDir = join(where, loaded.paths.dumpsDir, st.runId);
    const back = await loadRun(runDir, fresh, 'r_bacula_');
    expect(back.manifest.status).toBe('complete');
    await expectSameDatabases(back, fresh, original, (a, e, what) => expect(a, what).toEqual(e));
    expect(readdirSync(join(where, loaded.paths.dumpsDir)).filter((n) => n.endsWith('.inprogress'))).toEqual([]);
  });

  test('Incremental and Differential reach the hook (%l) and the restore chain', async () => {
    const inc = await job('Incremental');
    expect(inc.status, inc.log).toBe('T');
    let st = readStatus(loaded);
    expect(st).toMatchObject({ status: 'ok', level: 'Incremental', job: { id: String(inc.jobId) }, chain: { incrementalsSince: 1 } });
    const diff = await job('Differential');
    expect(diff.status, diff.log).toBe('T');
    st = readStatus(loaded);
    expect(st).toMatchObject({ status: 'ok', level: 'Differential', job: { id: String(diff.jobId) }, chain: { incrementalsSince: 0 } });
    expect(st.chain.lastDifferentialAt).toBeTruthy();
  });

  test('nightly under cron is a watchdog: silent while fresh, exit 6 with a message when stale', async () => {
    const env = { PATH: CRON_PATH };
    const ok = await cli(['--config', config, 'nightly'], { env });
    expect([ok.code, ok.stdout + ok.stderr]).toEqual([0, '']);
    const stale = join(base, 'etc/stale.yaml');
    writeFileSync(stale, JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), monitor: { max_age: '1h' } }));
    // Age the last success by two hours instead of waiting for it to age.
    const statusFile = loaded.paths.statusFile;
    const fresh = readFileSync(statusFile, 'utf8');
    const st = JSON.parse(fresh) as { lastSuccessAt: string };
    writeFileSync(statusFile, JSON.stringify({ ...st, lastSuccessAt: new Date(Date.parse(st.lastSuccessAt) - 2 * 3600_000).toISOString() }));
    try {
      const late = await cli(['--config', stale, 'nightly'], { env });
      expect(late.code).toBe(6);
      expect(late.stdout + late.stderr).toMatch(/CRITICAL: last successful backup 2h ago, older than max_age 1h/);
    } finally {
      writeFileSync(statusFile, fresh);
    }
  });

  test('dumps failing (MariaDB stopped) → JobStatus f, status.json failed, post-backup heard the error', async () => {
    await servers.mariadb.stop();
    try {
      const r = await job('Incremental');
      expect(r.status, r.log).toBe('f');
      expect(r.log).toMatch(/RunScript failed|Runscript: BeforeJob returned non-zero status/i);
      const st = readStatus(loaded);
      expect(st).toMatchObject({ status: 'failed', job: { id: String(r.jobId) }, backup: { status: 'failed' } });
      expect(st.dumps.failed).toBeGreaterThan(0);
      expect(st.problems.join('\n')).toMatch(/mysql/);
      const watchdog = await cli(['--config', config, 'nightly'], { env: { PATH: CRON_PATH } });
      expect(watchdog.code).toBe(6);
      expect(watchdog.stderr).toMatch(/last run failed/);
    } finally {
      await servers.mariadb.start();
    }
    // And the next job is fine again.
    const again = await job('Incremental');
    expect(again.status, again.log).toBe('T');
    expect(readStatus(loaded)).toMatchObject({ status: 'ok', backup: { status: 'ok' } });
  });
});

/** Every descendant of `pid` right now (children of children…), from /proc via pgrep -P. */
async function descendants(pid: number): Promise<{ pid: number; cmd: string }[]> {
  const out: { pid: number; cmd: string }[] = [];
  const queue = [pid];
  while (queue.length) {
    const parent = queue.shift()!;
    const r = await run(cmd('pgrep', ['-a', '-P', String(parent)]), { exitClass: exitClasses({ ok: [1] }) });
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      const [p, ...rest] = line.split(' ');
      out.push({ pid: Number(p), cmd: rest.join(' ') });
      queue.push(Number(p));
    }
  }
  return out;
}

/** Every path below `dir` (files and directories), relative. */
function listAll(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => [prefix + e.name, ...(e.isDirectory() ? listAll(join(dir, e.name), `${prefix}${e.name}/`) : [])]);
}

describe('SIGTERM during pre-backup (a cancelled Bacula job)', () => {
  test('exit 143, no dump tool or compressor left, no partial dump, lock released', async () => {
    // ~40 MB of hex that zstd -19 chews on for many seconds: the hook is surely mid-dump.
    await servers.mariadb.sql(`CREATE DATABASE big; USE big; CREATE TABLE big.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;
      INSERT INTO big.t SELECT seq, HEX(RANDOM_BYTES(1024)) FROM seq_1_to_20000;`);
    const sigRoot = join(base, 'sigterm-root');
    const raw = JSON.parse(readFileSync(config, 'utf8')) as { databases: Record<string, Record<string, unknown>> };
    const bigConfig = join(base, 'etc/big.yaml');
    writeFileSync(bigConfig, JSON.stringify({
      ...raw, paths: { root: sigRoot }, dumps: { level: 19, concurrency: 1 },
      databases: { mysql: { ...raw.databases.mysql, include: ['big'], dump_users: false }, postgresql: { enabled: false } },
    }));
    const sigLoaded = loadConfig({ file: bigConfig });
    const dumpsDir = sigLoaded.paths.dumpsDir;

    let hookPid = 0;
    const seen = new Map<number, string>();
    const result = cli(['--config', bigConfig, 'hook', 'pre-backup', '--engine', 'bacula', '--level', 'Full', '--jobid', '77', '--job', 'ApisCP'], {
      onSpawn: (c) => (hookPid = c.pid!),
    });
    // Wait until the dump pipeline (mariadb-dump | zstd) runs and writes into <run>.inprogress.
    const deadline = Date.now() + 30_000;
    for (;;) {
      for (const d of await descendants(hookPid)) seen.set(d.pid, d.cmd);
      const cmds = [...seen.values()].join('\n');
      const writing = listAll(dumpsDir).some((p) => /\.inprogress\/.+\.zst/.test(p));
      if (/mariadb-dump/.test(cmds) && /zstd/.test(cmds) && writing) break;
      if (Date.now() > deadline) throw new Error(`the dump never started: ${cmds}\n${listAll(dumpsDir).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const t = Date.now();
    process.kill(hookPid, 'SIGTERM');
    const r = await result;
    console.info(`hook exited ${r.code} ${Date.now() - t} ms after SIGTERM`);
    expect(r.code, r.stderr).toBe(143);
    expect(r.stderr).toMatch(/interrupted by SIGTERM/);
    for (const [pid, what] of seen) expect(isRunning(pid), `${pid} ${what}`).toBe(false);
    // The cut-short run is on record: `status` must not keep showing an older good run as the latest.
    expect(readStatus(sigLoaded)).toMatchObject({ status: 'failed', job: { id: '77' }, problems: ['interrupted by SIGTERM'] });
    // Nothing half-written: no run dir, no .inprogress, no temp file, no `latest`.
    expect(listAll(dumpsDir).filter((p) => !p.startsWith('fs-acls'))).toEqual([]);

    // The lock is free: a following hook (same root, same lock) succeeds at once.
    const smallConfig = join(base, 'etc/small.yaml');
    writeFileSync(smallConfig, JSON.stringify({ ...JSON.parse(readFileSync(bigConfig, 'utf8')), dumps: {}, databases: { ...raw.databases, postgresql: { enabled: false }, mysql: { ...raw.databases.mysql, include: ['site1_shop'] } } }));
    const next = await cli(['--config', smallConfig, 'hook', 'pre-backup', '--engine', 'bacula', '--jobid', '78', '--job', 'ApisCP']);
    expect(next.code, next.stderr).toBe(0);
    const post = await cli(['--config', smallConfig, 'hook', 'post-backup', '--engine', 'bacula', '--status', 'OK', '--jobid', '78', '--job', 'ApisCP']);
    expect(post.code, post.stderr).toBe(0);
    expect(readStatus(sigLoaded)).toMatchObject({ status: 'ok', job: { id: '78' } });
    await servers.mariadb.sql('DROP DATABASE big');
  });
});
