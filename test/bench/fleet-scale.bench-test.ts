import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parseLlist } from '../../lib/fleet/catalog.js';
import { assertBuilt, seedMysql, seedPostgres } from '../helpers/e2e.js';
import { startFleet, type Fleet } from '../harness/fleet.js';

// What docs/scaling.md is computed from: a director + storage daemon and CLIENTS ApisCP servers
// in network namespaces (test/harness/fleet.ts), every server with FILES small files and a
// MariaDB of about DB_MB, all backed up at once. Prints RESULT lines.

const CLIENTS = Number(process.env.FLEET_BENCH_CLIENTS ?? 5);
const FILES = Number(process.env.FLEET_BENCH_FILES ?? 3000);
const DB_ROWS = Number(process.env.FLEET_BENCH_DB_ROWS ?? 10000); // ~1 KB of random bytes each
const TICK = 100; // USER_HZ on Linux
const names = Array.from({ length: CLIENTS }, (_, i) => `s${i + 1}`);
let fleet: Fleet;
/** `net:[inode]` of each server's network namespace → its name. */
const byNetns = new Map<string, string>();

const result = (name: string, value: number | string, unit = ''): void => console.info(`RESULT fleet ${name}=${value}${unit ? ' ' + unit : ''}`);

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}
function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}
function pidOf(daemonName: string): number {
  // The harness starts daemons through `ip netns exec`, which execs them: find by config path.
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const c = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (c[0]?.endsWith(daemonName) && c.some((a) => a.startsWith(fleet.base))) return Number(p);
    } catch { /* gone */ }
  }
  throw new Error(`no ${daemonName} running`);
}
/** Hook processes (node …apiscp-backup.js … hook pre-backup|post-backup) by server, with first/last seen times. */
function scanHooks(seen: Map<string, { server: string; kind: string; first: number; last: number }>): void {
  const now = Date.now();
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let c: string[];
    try { c = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    const i = c.indexOf('hook');
    if (i < 0 || !c[1]?.endsWith('apiscp-backup.js')) continue;
    // Every server has the same paths: its network namespace says which one this is.
    let server = '?';
    try { server = byNetns.get(readlinkSync(`/proc/${p}/ns/net`)) ?? '?'; } catch { continue; }
    const key = `${p}:${c[i + 1]}`;
    const e = seen.get(key) ?? { server, kind: c[i + 1]!, first: now, last: now };
    e.last = now;
    seen.set(key, e);
  }
}

async function catalogCounts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of ['File', 'Path', 'Filename', 'Job', 'Log', 'JobMedia']) {
    const r = await fleet.bconsole(`.sql query="SELECT COUNT(*) FROM ${t}"`);
    out[t] = Number(/Using Catalog "MyCatalog"\n(\d+)/.exec(r)?.[1] ?? NaN);
  }
  return out;
}
const catalogBytes = (): number => statSync(join(fleet.director.workDir, 'bacula.db')).size;

interface Batch { wallMs: number; dirCpuS: number; sdCpuS: number; dirPeakKb: number; sdPeakKb: number; dirIdleKb: number; sdIdleKb: number; hooks: Map<string, { server: string; kind: string; first: number; last: number }>; jobs: Record<string, string>[] }

async function batch(level: string, which = names): Promise<Batch> {
  const dir = pidOf('bacula-dir');
  const sd = pidOf('bacula-sd');
  const [d0, s0, dirIdleKb, sdIdleKb] = [cpuTicks(dir), cpuTicks(sd), rssKb(dir), rssKb(sd)];
  let [dirPeakKb, sdPeakKb] = [dirIdleKb, sdIdleKb];
  const hooks = new Map<string, { server: string; kind: string; first: number; last: number }>();
  let done = false;
  const sampler = (async () => {
    while (!done) {
      dirPeakKb = Math.max(dirPeakKb, rssKb(dir));
      sdPeakKb = Math.max(sdPeakKb, rssKb(sd));
      scanHooks(hooks);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const t = Date.now();
  const ids = await fleet.queueJobs(which, level);
  const outcomes = await fleet.waitJobs(ids);
  const wallMs = Date.now() - t;
  done = true;
  await sampler;
  for (const [n, o] of outcomes) expect(o.status, `${n}: ${o.log}`).toBe('T');
  const jobs = parseLlist(await fleet.bconsole([...ids.values()].map((id) => `llist jobid=${id}`).join('\n')));
  return { wallMs, dirCpuS: (cpuTicks(dir) - d0) / TICK, sdCpuS: (cpuTicks(sd) - s0) / TICK, dirPeakKb, sdPeakKb, dirIdleKb, sdIdleKb, hooks, jobs };
}

function report(tag: string, b: Batch, n: number): void {
  result(`${tag}.jobs`, n);
  result(`${tag}.wall`, (b.wallMs / 1000).toFixed(1), 's');
  result(`${tag}.director_cpu_per_job`, (b.dirCpuS / n).toFixed(3), 'CPU-s');
  result(`${tag}.sd_cpu_per_job`, (b.sdCpuS / n).toFixed(3), 'CPU-s');
  result(`${tag}.director_rss_idle`, b.dirIdleKb, 'KB');
  result(`${tag}.director_rss_extra_per_concurrent_job`, Math.round((b.dirPeakKb - b.dirIdleKb) / n), 'KB');
  result(`${tag}.sd_rss_extra_per_concurrent_job`, Math.round((b.sdPeakKb - b.sdIdleKb) / n), 'KB');
  const files = b.jobs.reduce((a, j) => a + Number(j.JobFiles), 0);
  const bytes = b.jobs.reduce((a, j) => a + Number(j.JobBytes), 0);
  result(`${tag}.files`, files);
  result(`${tag}.bytes`, bytes);
  // Hook share: pre + post lifetimes of each server's hook processes (seen every 20 ms) against
  // the client-side span of its job, from the pre-backup hook's start to the post-backup hook's
  // end (ms resolution; the catalog's StartTime/EndTime have 1 s). The span leaves out the
  // director's few ms before the hook and the attribute despooling after it.
  const shares: number[] = [];
  const hookS: number[] = [];
  const spanS: number[] = [];
  for (const j of b.jobs) {
    const server = /^(s\d+)-/.exec(j.Name ?? '')?.[1];
    const hs = [...b.hooks.values()].filter((h) => h.server === server);
    const hookMs = hs.reduce((a, h) => a + (h.last - h.first), 0);
    const spanMs = Math.max(...hs.map((h) => h.last)) - Math.min(...hs.map((h) => h.first));
    hookS.push(hookMs / 1000);
    spanS.push(spanMs / 1000);
    shares.push(hookMs / spanMs);
  }
  const avg = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;
  result(`${tag}.hook_seconds_per_job`, avg(hookS).toFixed(2), 's');
  result(`${tag}.client_span_per_job`, avg(spanS).toFixed(2), 's');
  result(`${tag}.hook_share_of_job`, (avg(shares) * 100).toFixed(0), '%');
}

beforeAll(async () => {
  assertBuilt();
  fleet = await startFleet(names.map((name, i) => ({ name, postgres: i === 0 })));
  for (const s of fleet.servers) byNetns.set(`net:[${statSync(`/run/netns/${s.netns}`).ino}]`, s.name);
  await Promise.all(fleet.servers.map(async (s) => {
    await seedMysql(s.my, `site1_${s.name}shop`);
    await s.my.sql(`USE site1_${s.name}shop; CREATE TABLE bulk (id INT PRIMARY KEY, v BLOB) ENGINE=InnoDB; INSERT INTO bulk SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_${DB_ROWS};`);
    if (s.pg) await seedPostgres(s.pg, `site2_${s.name}pg`);
    const dir = join(s.root, 'home/virtual/site1/shadow/var/www/html/bench');
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < FILES; i++) writeFileSync(join(dir, `f${i}.html`), randomBytes(1024).toString('base64'));
  }));
}, 300_000);

afterAll(async () => fleet?.stop(), 60_000);

test(`${CLIENTS} clients: director cost per concurrent job, catalog growth, the hook's share`, async () => {
  const cat0 = catalogBytes();
  const rows0 = await catalogCounts();
  const one = await batch('Full', ['s1']);
  report('full_x1', one, 1);
  const cat1 = catalogBytes();
  const rows1 = await catalogCounts();
  const all = await batch('Full', names.slice(1));
  report(`full_x${CLIENTS - 1}`, all, CLIENTS - 1);
  const cat2 = catalogBytes();
  const rows2 = await catalogCounts();
  // Touch a few files per server: an Incremental with little data is what most nights look like.
  for (const s of fleet.servers) for (let i = 0; i < 10; i++) writeFileSync(join(s.root, `home/virtual/site1/shadow/var/www/html/bench/f${i}.html`), randomBytes(1024).toString('base64'));
  const inc = await batch('Incremental');
  report(`incr_x${CLIENTS}`, inc, CLIENTS);
  const cat3 = catalogBytes();
  const rows3 = await catalogCounts();

  const fullFiles = [...one.jobs, ...all.jobs].reduce((a, j) => a + Number(j.JobFiles), 0);
  result('catalog.bytes_start', cat0);
  result('catalog.full_jobs_files', fullFiles);
  result('catalog.growth_per_full_job', Math.round((cat2 - cat0) / CLIENTS), 'B');
  result('catalog.growth_per_file_row', ((cat2 - cat0) / (rows2.File! - rows0.File!)).toFixed(0), 'B');
  result('catalog.file_rows_per_full_job', Math.round((rows2.File! - rows0.File!) / CLIENTS));
  const incFiles = inc.jobs.reduce((a, j) => a + Number(j.JobFiles), 0);
  result('catalog.growth_per_incr_job', Math.round((cat3 - cat2) / CLIENTS), 'B');
  result('catalog.incr_files', incFiles);
  result('catalog.log_rows_per_job', ((rows3.Log! - rows0.Log!) / (2 * CLIENTS)).toFixed(1));
  result('catalog.first_job_growth', cat1 - cat0, 'B');
  console.info(JSON.stringify({ rows0, rows1, rows2, rows3 }));
});
