import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { resticEnv } from '../../lib/engine/restic.js';
import { resticTlsArgs } from '../../lib/engine/remote.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildApiscpTree } from '../../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import { assertBuilt, MY_DBS, readStatus, rmrf, seedMysql, writeConfig, type CliResult } from '../helpers/e2e.js';
import { addLoss, manifestTimes, startDelayRelay, watchPhases, type Relay } from '../harness/offsite-link.js';
import { REST_PORT, startOffsite, type Offsite } from '../harness/offsite.js';

// Issue 30 item 3 for restic over REST (rclone serve restic --append-only, TLS, client
// certificate): a lossy, delayed link (nftables drops a share of the packets, a relay on the
// backup host holds each direction; test/harness/offsite-link.ts: no sch_netem needed), then the
// link cut mid-backup. Each run either succeeds or fails cleanly (exit 5 naming the backup host, no
// snapshot counted, the lock released, status CRITICAL naming the remote); the next run succeeds;
// the dumps were complete before restic started (running.json's phases, the manifest and restic's
// own snapshot time).

const base = mkdtempSync(join(tmpdir(), 'offsite-restic-faults-'));
const RELAY_PORT = 8001;
const DELAY_MS = 25;
/** restic.stall_timeout: the cut run must end this long after restic stops moving (not restic's half hour). */
const STALL_S = 15;
let my: MariadbServer;
let offsite: Offsite;
let relay: Relay;
let config: string;
let loaded: LoadedConfig;
let root: string;
let html: string;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ip = (args: string[]) => run(cmd('ip', args));
const tc = (args: string[]) => run(offsite.onServer(cmd('tc', args)));
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

beforeAll(async () => {
  assertBuilt();
  [my, offsite] = await Promise.all([startMariadb(), startOffsite(base)]);
  relay = await startDelayRelay(offsite, RELAY_PORT, REST_PORT, DELAY_MS);
  await seedMysql(my, MY_DBS[0], 20);
  root = join(base, 'root');
  const tree = await buildApiscpTree(root, { sites: 1 });
  html = join(tree.home, 'site1/shadow/var/www/html');
  writeFileSync(join(html, 'lossy.bin'), randomBytes(3 * 1024 * 1024));
  writeFileSync(join(base, 'secret'), 'restic faults pass\n', { mode: 0o600 });
  config = writeConfig(join(base, 'etc/config.yaml'), {
    root, engine: 'restic',
    extra: {
      databases: { mysql: { enabled: true, socket: my.socket, defaults_file: join(root, 'no-my.cnf') }, postgresql: { enabled: false } },
      // Through the relay: every byte between restic and the REST server is held DELAY_MS each way.
      // 4 MiB packs (restic's smallest): on the 8 Mbit/s link the archiver waits seconds, not
      // half a minute, for a pack upload, well inside STALL_S.
      restic: {
        repository: `rest:https://${offsite.address}:${RELAY_PORT}/srv/`, password_file: join(base, 'secret'), cacert: offsite.tls.ca, tls_client_cert: offsite.tls.clientPem,
        append_only: true, stall_timeout: STALL_S, extra_args: ['--pack-size', '4'],
      },
    },
  });
  loaded = loadConfig({ file: config });
  const init = await offsite.cli(config, ['repo-init']);
  expect(init.code, init.stderr).toBe(0);
}, 180_000);

afterAll(async () => {
  await relay?.stop();
  await offsite?.stop();
  await my?.destroy();
  rmrf(base);
});

/** restic's snapshots on the backup host (as the server lists them, through our certificate). */
async function snapshots(): Promise<{ id: string; time: string }[]> {
  const r = await run(offsite.onServer(cmd('restic', [...resticTlsArgs(loaded), '--no-lock', 'snapshots', '--json'], { env: resticEnv(loaded) })));
  return JSON.parse(r.stdout) as { id: string; time: string }[];
}

/** A run, with the phases running.json went through. */
async function runWatched(): Promise<{ r: CliResult; phases: Map<string, string> }> {
  const watch = watchPhases(loaded.paths.stateDir);
  const r = await offsite.cli(config, ['run']);
  return { r, phases: await watch.stop() };
}

/** The dumps of the newest run were complete before the engine's phase began. */
function dumpsBeforeTransfer(phases: Map<string, string>): void {
  const m = manifestTimes(join(loaded.paths.dumpsDir, 'latest/manifest.json'));
  expect(m.status).toBe('complete');
  expect(phases.get('backup'), `phases seen: ${[...phases.keys()].join(', ')}`).toBeDefined();
  expect(Date.parse(m.finishedAt)).toBeLessThanOrEqual(Date.parse(phases.get('backup')!));
  expect(Date.parse(readStatus(loaded).startedAt)).toBeLessThanOrEqual(Date.parse(m.startedAt));
}

/** What a clean failure leaves: exit 5 naming the backup host, nothing counted, the lock free, CRITICAL. */
async function expectCleanFailure(failed: CliResult, snapshotsBefore: string[]): Promise<void> {
  const remote = loaded.config.restic.repository!;
  expect(failed.code, failed.stderr).toBe(5);
  expect(failed.stderr).toContain(`the link to the backup host ${remote} broke or it did not answer`);
  expect(readStatus(loaded)).toMatchObject({ status: 'failed', backup: { status: 'failed' } });
  expect(existsSync(loaded.paths.lockPath), 'the lock is still held').toBe(false);
  const status = await offsite.cli(config, ['status']);
  expect(status.code, status.stdout).toBe(2);
  expect(status.stdout).toMatch(/^CRITICAL: /);
  expect(status.stdout).toMatch(new RegExp(`last run failed: restic backup failed .*the link to the backup host ${escape(remote)} broke`));
  // The backup host keeps what arrived (append-only), but no snapshot was written: none counted.
  expect((await snapshots()).map((s) => s.id).sort()).toEqual(snapshotsBefore);
  const listed = JSON.parse((await offsite.cli(config, ['--json', 'list'])).stdout) as { backups: { id: string }[] };
  expect(listed.backups.map((b) => b.id).sort()).toEqual(snapshotsBefore.map((s) => s.slice(0, listed.backups[0]?.id.length ?? 8)).sort());
}

test('a lossy, delayed link: the run succeeds or fails cleanly, the next run succeeds, the dumps never wait for the link', async () => {
  // The delay is there: a TLS 1.3 handshake through the relay waits for one round trip, held
  // DELAY_MS each way (the TCP handshake itself ends at the relay).
  const timing = await run(offsite.onServer(cmd('curl', ['-sS', '-o', '/dev/null', '-w', '%{time_appconnect}', '--cacert', offsite.tls.ca, '--cert', offsite.tls.clientPem, `https://${offsite.address}:${RELAY_PORT}/srv/config`])));
  expect(Number(timing.stdout)).toBeGreaterThanOrEqual((2 * DELAY_MS) / 1000);

  const loss = await addLoss(offsite, 4);
  let lossy: { r: CliResult; phases: Map<string, string> };
  try {
    lossy = await runWatched();
  } finally {
    const dropped = await loss.dropped();
    await loss.remove();
    console.log(`lossy run: exit ${lossy!?.r.code} in ${lossy!?.r.ms} ms, ${dropped} packets dropped`);
    // The loss was real: the kernel dropped packets of this run.
    expect(dropped).toBeGreaterThan(0);
  }
  dumpsBeforeTransfer(lossy.phases);
  const after = await snapshots();
  if (lossy.r.code === 0) {
    // Succeeded: its snapshot is there, counted, and restic began it after the dumps were complete.
    expect(after).toHaveLength(1);
    const m = manifestTimes(join(loaded.paths.dumpsDir, 'latest/manifest.json'));
    expect(Date.parse(after[0]!.time)).toBeGreaterThanOrEqual(Date.parse(m.finishedAt));
    expect((await offsite.cli(config, ['status'])).stdout).toMatch(/^OK/);
  } else {
    await expectCleanFailure(lossy.r, []);
  }

  const next = await runWatched();
  expect(next.r.code, next.r.stderr).toBe(0);
  dumpsBeforeTransfer(next.phases);
  const snaps = await snapshots();
  expect(snaps).toHaveLength(lossy.r.code === 0 ? 2 : 1);
  const newest = snaps.sort((a, b) => Date.parse(a.time) - Date.parse(b.time)).at(-1)!;
  expect(Date.parse(newest.time)).toBeGreaterThanOrEqual(Date.parse(manifestTimes(join(loaded.paths.dumpsDir, 'latest/manifest.json')).finishedAt));
  expect((await offsite.cli(config, ['status'])).stdout).toMatch(/^OK/);
}, 240_000);

/** pid of our `restic backup` (its argv names our tree), once it runs. */
async function resticBackupPid(): Promise<number | undefined> {
  const r = await run(cmd('ps', ['-eo', 'pid=,args=']));
  const line = r.stdout.split('\n').find((l) => /\brestic\b.*\bbackup\b/.test(l) && l.includes(root));
  return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
}

function repoBytes(): number {
  const data = join(offsite.resticDir, 'srv/data');
  if (!existsSync(data)) return 0;
  let n = 0;
  for (const d of readdirSync(data)) for (const f of readdirSync(join(data, d))) n += statSync(join(data, d, f)).size;
  return n;
}

test('the link cut mid-backup: a clean failure naming the remote, no snapshot counted, lock released; the next run succeeds', async () => {
  // Incompressible and new, so the slow link has something to carry for a while.
  writeFileSync(join(html, 'big.bin'), randomBytes(24 * 1024 * 1024));
  const before = (await snapshots()).map((s) => s.id).sort();
  await tc(['qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', '8mbit', 'burst', '32kbit', 'latency', '400ms']);
  const startBytes = repoBytes();
  const watch = watchPhases(loaded.paths.stateDir);
  const running = offsite.cli(config, ['run']);
  let pid: number | undefined;
  for (const until = Date.now() + 120_000; !pid && Date.now() < until; await sleep(100)) pid = await resticBackupPid();
  expect(pid, 'restic backup never started').toBeDefined();
  // Some packs reached the backup host, then the cable is pulled.
  for (const until = Date.now() + 60_000; repoBytes() - startBytes < 4 * 1024 * 1024 && Date.now() < until; ) await sleep(200);
  expect(repoBytes() - startBytes).toBeGreaterThanOrEqual(4 * 1024 * 1024);
  await ip(['-n', offsite.net.host('srv').netns, 'link', 'set', 'eth0', 'down']);
  const cutAt = Date.now();
  const failed = await running;
  const phases = await watch.stop();
  const afterCut = Date.now() - cutAt;
  console.log(`restic after the cut: exit ${failed.code} ${afterCut} ms after it`);
  await ip(['-n', offsite.net.host('srv').netns, 'link', 'set', 'eth0', 'up']);
  await tc(['qdisc', 'del', 'dev', 'eth0', 'root']);

  dumpsBeforeTransfer(phases);
  await expectCleanFailure(failed, before);
  // Ended by restic.stall_timeout (plus the watchdog's quarter-period and restic's exit), not by restic.
  expect(failed.stderr).toContain(`no progress for ${STALL_S} s, restic.stall_timeout`);
  expect(afterCut).toBeLessThan((STALL_S * 1.25 + 10) * 1000);

  const next = await runWatched();
  expect(next.r.code, next.r.stderr).toBe(0);
  dumpsBeforeTransfer(next.phases);
  expect(await snapshots()).toHaveLength(before.length + 1);
  expect((await offsite.cli(config, ['status'])).stdout).toMatch(/^OK/);
}, 150_000);
