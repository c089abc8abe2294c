/**
 * Issue 7, "nothing lost, nothing hidden", through the BUILT CLI against real MariaDB and
 * PostgreSQL servers: every database accounted for every night, every warning surfaced, no
 * false success. The only stand-in is ApisCP's cpcmd (sandbox/fake-apiscp).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunState } from '../../lib/report/run-state.js';
import type { Servers } from '../../lib/throwaway/servers.js';
import { EXPORT_SCOPE, sandboxPool, TWO_SITES, waitFor, type Sandbox } from '../helpers/sandbox.js';

const SITES = TWO_SITES;
const pool = sandboxPool({ sites: SITES, scopes: { [EXPORT_SCOPE]: false } });
const sandbox = pool.sandbox;
let servers: Servers;

beforeAll(async () => {
  servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; CREATE TABLE a_wp.posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB; INSERT INTO a_wp.posts VALUES (1, 'hello');
    CREATE DATABASE b_shop; CREATE TABLE b_shop.items (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO b_shop.items VALUES (1);
  `);
  await servers.postgres.sql('CREATE DATABASE a_pg');
});

afterAll(() => pool.destroy());

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const state = (sb: Sandbox): RunState => JSON.parse(readFileSync(sb.statusFile, 'utf8')) as RunState;

// ---------------------------------------------------------------------------------------------

describe('a healthy run prints nothing, whatever the concurrency', () => {
  beforeAll(async () => {
    // More databases than slots at concurrency 8, so dumps and verifications overlap.
    const many = Array.from({ length: 14 }, (_, i) => `CREATE DATABASE n${i}; CREATE TABLE n${i}.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO n${i}.t VALUES (${i});`);
    await servers.mariadb.sql(many.join('\n'));
  });
  afterAll(async () => {
    await servers.mariadb.sql(Array.from({ length: 14 }, (_, i) => `DROP DATABASE n${i};`).join('\n'));
  });

  for (const concurrency of [1, 2, 8]) {
    it(`concurrency ${concurrency}: exit 0, empty stdout and stderr (no MaxListenersExceededWarning), status OK exit 0`, async () => {
      const sb = await sandbox({ config: { dumps: { concurrency } } });
      const r = await sb.cli(['dump']);
      expect(r).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
      const m = sb.manifest(sb.latest()!);
      expect(m.entries.filter((e) => e.object === 'database' && e.status === 'ok').length).toBeGreaterThanOrEqual(17);
      const st = await sb.cli(['status']);
      expect(st.exitCode, st.stdout).toBe(0);
      expect(st.stdout).toMatch(/^OK: /);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('the shipped default (databases.*.enabled: auto) with MariaDB stopped for dumps.keep + 2 nights', () => {
  it('every night exits 1 with a summary naming mysql, status is CRITICAL, the last good dumps stay', async () => {
    // enabled: null removes the sandbox's `enabled: true`: the shipped default `auto` applies.
    const sb = await sandbox({ config: { dumps: { keep: 2 }, databases: { mysql: { enabled: null }, postgresql: { enabled: null } } } });
    const good = await sb.cli(['nightly']);
    expect(good).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
    const goodRun = sb.latest()!;
    const goodManifest = sb.manifest(goodRun);
    const wp = goodManifest.entries.find((e) => e.database === 'a_wp')!;
    expect(wp.status).toBe('ok');
    expect(goodManifest.servers?.map((s) => [s.kind, s.reached])).toEqual([
      ['mysql', true],
      ['postgresql', true],
    ]);
    // auto: expected because a server is installed (a binary or unit on this machine), not because it answered.
    expect(goodManifest.servers?.[0]?.expected).toMatch(/server binary|service unit/);

    await servers.mariadb.stop();
    try {
      for (let night = 1; night <= 2 + 2; night++) {
        const r = await sb.cli(['nightly']);
        expect(r.exitCode, `night ${night}: ${r.stderr}`).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/^apiscp-backup FAILED on /);
        expect(r.stderr).toContain(`mysql: cannot connect to the server at ${servers.mariadb.socket}`);
        const st = await sb.cli(['status']);
        expect(st.exitCode, st.stdout).toBe(2);
        expect(st.stdout).toMatch(/^CRITICAL: last run failed: mysql/);
        // The good run is still there, `latest` still points at it, its mysql dump intact.
        expect(sb.latest()).toBe(goodRun);
        expect(sha256(join(sb.dumpsDir, goodRun, wp.path!))).toBe(wp.sha256);
      }
      const failed = sb.runDirs().filter((n) => n !== goodRun);
      const m = sb.manifest(failed.at(-1)!);
      expect(m.status).toBe('failed');
      // The manifest says which server was expected and not reached, after the retry.
      expect(m.servers?.find((s) => s.kind === 'mysql')).toMatchObject({ reached: false, attempts: 2 });
      expect(m.entries.find((e) => e.kind === 'mysql' && e.object === 'server')).toMatchObject({ status: 'failed' });
      expect(m.missing?.filter((x) => x.kind === 'mysql').map((x) => [x.database, x.reason])).toEqual([
        ['a_wp', 'unreachable'],
        ['b_shop', 'unreachable'],
      ]);
    } finally {
      await servers.mariadb.start();
    }
    // Back up: a complete run again, `latest` moves, retention goes back to dumps.keep.
    const back = await sb.cli(['nightly']);
    expect(back).toMatchObject({ exitCode: 0, stderr: '' });
    expect(sb.latest()).not.toBe(goodRun);
  });
});

// ---------------------------------------------------------------------------------------------

describe('every database accounted for', () => {
  it('a database dropped between runs while the panel still lists it: exit 0 with a summary, status WARNING names it, its last dump kept', async () => {
    await servers.mariadb.sql('CREATE DATABASE c_drop; CREATE TABLE c_drop.t (id INT PRIMARY KEY); INSERT INTO c_drop.t VALUES (1);');
    const sb = await sandbox({ sites: { ...SITES, site3: { mysql: ['c_drop'] } }, config: { dumps: { keep: 1 } } });
    expect((await sb.cli(['dump'])).exitCode).toBe(0);
    const first = sb.latest()!;
    const dropped = sb.manifest(first).entries.find((e) => e.database === 'c_drop')!;
    await servers.mariadb.sql('DROP DATABASE c_drop');
    const r = await sb.cli(['dump']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^apiscp-backup finished with warnings on /);
    expect(r.stderr).toMatch(/mysql 'c_drop' \(site3\) was in run \S+ but the server no longer lists it \(the panel still lists it for site3\)/);
    const st = await sb.cli(['status']);
    expect(st.exitCode, st.stdout).toBe(1);
    expect(st.stdout.split('\n')[0]).toMatch(/^WARNING: mysql 'c_drop' \(site3\) was in run/);
    expect(state(sb).warnings).toEqual([expect.objectContaining({ code: 'database-missing', kind: 'mysql', database: 'c_drop', site: 'site3' })]);
    // dumps.keep is 1, yet the run with the newest good dump of c_drop stays (rule 3).
    const second = sb.latest()!;
    expect(second).not.toBe(first);
    expect(sb.runDirs()).toEqual([first, second]);
    expect(sha256(join(sb.dumpsDir, first, dropped.path!))).toBe(dropped.sha256);
    expect(sb.manifest(second).missing).toEqual([expect.objectContaining({ kind: 'mysql', database: 'c_drop', reason: 'missing', lastDumpRun: first })]);
  });

  it('a site deleted (panel and server no longer list its database): informational, status OK, kept for dumps.keep_gone', async () => {
    await servers.mariadb.sql('CREATE DATABASE d_gone; CREATE TABLE d_gone.t (id INT PRIMARY KEY);');
    const sb = await sandbox({ sites: { ...SITES, site4: { mysql: ['d_gone'] } }, config: { dumps: { keep: 1 } } });
    expect((await sb.cli(['dump'])).exitCode).toBe(0);
    const first = sb.latest()!;
    await servers.mariadb.sql('DROP DATABASE d_gone');
    const panel = sb.readPanelState();
    delete panel.sites!.site4;
    sb.writePanelState(panel);
    const r = await sb.cli(['dump']);
    expect(r).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
    const st = await sb.cli(['status']);
    expect(st.exitCode, st.stdout).toBe(0);
    expect(st.stdout).toMatch(/^OK: /);
    expect(st.stdout).toMatch(/no longer dumped \(site\/database deleted or excluded; last dump kept for dumps.keep_gone\): mysql 'd_gone'/);
    expect(sb.manifest(sb.latest()!).missing).toEqual([expect.objectContaining({ database: 'd_gone', reason: 'gone', site: 'site4' })]);
    expect(sb.runDirs()).toContain(first);
    // With keep_gone 0s the gone database no longer holds its run: retention is back to dumps.keep.
    sb.writeConfig({ dumps: { keep: 1, keep_gone: '0s' } });
    expect((await sb.cli(['dump'])).exitCode).toBe(0);
    expect(sb.runDirs()).toEqual([sb.latest()]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('warnings are first-class: events skipped', () => {
  const DB = "it's";
  beforeAll(async () => {
    await servers.mariadb.sql("CREATE DATABASE `it's`; CREATE TABLE `it's`.t (id INT PRIMARY KEY) ENGINE=InnoDB; CREATE EVENT `it's`.tick ON SCHEDULE EVERY 1 DAY DO SELECT 1;");
  });
  afterAll(async () => {
    await servers.mariadb.sql("DROP DATABASE `it's`");
  });

  it('the cron run exits 0 with a short summary; status WARNING names it; the manifest entry says events are missing', async () => {
    // A healthchecks.io-style monitor on loopback: what does the success ping say?
    const pings: { url: string; body: string }[] = [];
    const monitor = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        pings.push({ url: req.url ?? '', body });
        res.writeHead(200).end('OK');
      });
    });
    await new Promise<void>((resolve) => monitor.listen(0, '127.0.0.1', resolve));
    const hb = `http://127.0.0.1:${(monitor.address() as AddressInfo).port}/ping/abc`;
    const sb = await sandbox({ config: { monitor: { prometheus_textfile: '/var/lib/node_exporter/apiscp.prom', heartbeat: { start: `${hb}/start`, success: hb, failure: `${hb}/fail` } } } });
    const r = await sb.cli(['nightly']);
    await new Promise((resolve) => monitor.close(resolve));
    // The success ping carries the warning codes (no database names leave the host without send_log_tail).
    expect(pings).toEqual([
      { url: '/ping/abc/start', body: '' },
      { url: '/ping/abc', body: 'apiscp-backup: 1 warning: events-skipped' },
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^apiscp-backup finished with warnings on /);
    expect(r.stderr).toContain(`mysql "it's": 1 event(s) not in the dump`);
    expect(r.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(20);

    const entry = sb.manifest(sb.latest()!).entries.find((e) => e.database === DB)!;
    expect(entry.status).toBe('ok');
    expect(entry.details).toMatchObject({ events: 1, eventsSkipped: 1 });
    expect(entry.warnings).toEqual([expect.objectContaining({ code: 'events-skipped', kind: 'mysql', database: DB })]);

    const st = await sb.cli(['status']);
    expect(st.exitCode, st.stdout).toBe(1);
    expect(st.stdout.split('\n')[0]).toMatch(/^WARNING: mysql "it's": 1 event\(s\) not in the dump.* \| .*warnings=1;1;;0/);
    expect(state(sb)).toMatchObject({ status: 'warning', warnings: [expect.objectContaining({ code: 'events-skipped' })] });

    const prom = readFileSync(join(sb.root, 'var/lib/node_exporter/apiscp.prom'), 'utf8');
    expect(prom).toMatch(/^apiscp_backup_warnings\{engine="none"\} 1$/m);
    expect(prom).toMatch(/^apiscp_backup_warnings_by_code\{engine="none",code="events-skipped"\} 1$/m);
    expect(prom).toMatch(/^apiscp_backup_last_run_success\{engine="none"\} 1$/m);
  });
});

// ---------------------------------------------------------------------------------------------

describe('space before work', () => {
  it('a tmpfs too small for the estimated run: clear error naming dir, needed and free; nothing written or deleted', async () => {
    const sb = await sandbox({ config: { dumps: { keep: 1 } } });
    mkdirSync(sb.dumpsDir, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=3m,mode=0700', 'tmpfs', sb.dumpsDir]);
    try {
      expect((await sb.cli(['dump'])).exitCode).toBe(0);
      const before = sb.runDirs();
      expect(before).toHaveLength(1);
      // Leave about 512 KB: more than last night's dumps, less than the estimate with its margin (1 MiB at least).
      const { stdout } = await execa('df', ['--output=avail', '-B1', sb.dumpsDir]);
      const avail = Number(stdout.trim().split('\n').pop());
      await execa('fallocate', ['-l', String(avail - 512 * 1024), join(sb.dumpsDir, 'filler')]);
      const r = await sb.cli(['dump']);
      expect(r.exitCode, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`not enough free space in ${sb.dumpsDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: this run needs about [\\d.]+ MiB \\(run \\S+ wrote [\\d.]+ MiB, times dumps.space_margin 1.2\\), 0\\.[45]\\d* MiB free; nothing was written or deleted`));
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(sb.runDirs()).toEqual(before);
      expect(readdirSync(sb.dumpsDir).sort()).toEqual([...before, 'filler', 'latest'].sort());
      expect(state(sb)).toMatchObject({ status: 'failed' });
      expect((await sb.cli(['status'])).exitCode).toBe(2);
    } finally {
      await execa('umount', [sb.dumpsDir], { reject: false });
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('no false success: restore acls', () => {
  let sb: Sandbox;
  let sidecar: string;
  let shadow: string;
  beforeAll(async () => {
    sb = await sandbox({ config: { databases: { mysql: { enabled: false }, postgresql: { enabled: false } }, panel: { enabled: false } } });
    shadow = join(sb.root, 'home/virtual/site1/shadow');
    for (const rel of ['html/index.html', 'notes.txt', 'var/lib/mysql/raw.ibd']) {
      mkdirSync(dirname(join(shadow, rel)), { recursive: true });
      writeFileSync(join(shadow, rel), rel);
    }
    for (const rel of ['html', 'html/index.html', 'notes.txt', 'var/lib/mysql/raw.ibd']) await execa('setfacl', ['-m', 'user:65534:r-x', join(shadow, rel)]);
    // duplicity loses ACLs: the pre-backup hook writes the sidecar into the dumps dir.
    const r = await sb.cli(['hook', 'pre-backup', '--engine', 'duplicity']);
    expect(r, r.stderr).toMatchObject({ exitCode: 0, stderr: '' });
    sidecar = join(sb.dumpsDir, 'fs-acls.zst');
    expect(existsSync(sidecar)).toBe(true);
  });

  it('the sidecar leaves out what paths.exclude lists (site*/shadow/var/lib)', async () => {
    const text = (await execa('zstd', ['-dcq', sidecar])).stdout;
    expect(text).toContain(`# file: ${join(shadow, 'notes.txt')}`);
    expect(text).toContain(`# file: ${join(shadow, 'html/index.html')}`);
    expect(text).not.toContain('var/lib');
  });

  it('a directory where none of the paths exist: exit 2, naming the directory the sidecar expects', async () => {
    const wrong = join(sb.root, 'restore-wrong');
    mkdirSync(join(wrong, 'site1/shadow/html'), { recursive: true });
    const r = await sb.cli(['restore', 'acls', '--from', wrong, '--sidecar', sidecar]);
    expect(r.exitCode, r.stderr + r.stdout).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`none of the `);
    expect(r.stderr).toContain(`exist under ${wrong}: the sidecar was written for paths under ${shadow}`);
    expect(r.stderr).toContain(`so ${wrong} should contain ${join(wrong, shadow)}`);
    expect(r.stderr).not.toMatch(/re-applied/);
  });

  it('a partial restore: applied and missing counts, and the applied ACLs are really there', async () => {
    const target = join(sb.root, 'restore-part');
    const notes = join(target, shadow, 'notes.txt');
    mkdirSync(dirname(notes), { recursive: true });
    writeFileSync(notes, 'restored');
    const r = await sb.cli(['restore', 'acls', '--from', target, '--sidecar', sidecar]);
    expect(r.exitCode, r.stderr).toBe(0);
    // notes.txt exists under the target; html and html/index.html do not (shadow and var hold no ACL: not in the sidecar).
    expect(r.stdout).toMatch(new RegExp(`^re-applied ACLs to 1 and xattrs to 0 paths under ${target} .*; 2 ACL and 0 xattr entries skipped: their paths are not under ${target}`));
    expect((await execa('getfacl', ['-cpn', notes])).stdout).toMatch(/^user:65534:r-x$/m);
    expect(statSync(notes).isFile()).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe('no swallowed errors', () => {
  it('a corrupt pins.json fails the run (exit 1, naming the file) and deletes nothing', async () => {
    const sb = await sandbox({ config: { dumps: { keep: 1 } } });
    expect((await sb.cli(['dump'])).exitCode).toBe(0);
    const before = sb.runDirs();
    const pins = join(sb.stateDir, 'pins.json');
    writeFileSync(pins, '[{"runId": "20261201T0300');
    const r = await sb.cli(['dump']);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toContain(`${pins}: not valid JSON`);
    expect(r.stderr).toContain('Fix or remove it once no backup job is running');
    expect(r.stderr).not.toMatch(/internal error/);
    expect(sb.runDirs()).toEqual(before);
    expect(state(sb).status).toBe('failed');
    // Bacula's post-backup hook still records the job's outcome, and says the pins file is broken.
    const post = await sb.cli(['hook', 'post-backup', '--engine', 'bacula', '--status', 'OK', '--jobid', '9']);
    expect(post.exitCode, post.stderr).toBe(1);
    expect(post.stderr).toContain(`${pins}: not valid JSON`);
    expect(state(sb)).toMatchObject({ backup: { status: 'ok', detail: 'OK' }, job: { id: '9' } });
    expect(state(sb).problems.join('\n')).toContain(`${pins}: not valid JSON`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('lock takeover is safe', () => {
  it('two runs waiting on a dead holder never both take the lock (raced 6 times)', async () => {
    // Only the lock matters here: no databases, a slow panel so each run holds the lock ~0.4 s.
    const sb = await sandbox({
      quirks: { delayMs: 400 },
      config: { databases: { mysql: { enabled: false }, postgresql: { enabled: false } }, lock: { wait: '30s' }, dumps: { keep: 50 } },
    });
    const gone = execa('true');
    const dead = gone.pid!;
    await gone;
    for (let round = 0; round < 6; round++) {
      mkdirSync(sb.lockPath, { recursive: true });
      writeFileSync(`${sb.lockPath}.holder.json`, JSON.stringify({ pid: dead, host: hostname(), command: 'apiscp-backup dump', started: new Date(Date.now() - round).toISOString() }));
      const before = new Set(sb.runDirs());
      const [a, b] = await Promise.all([sb.cli(['dump']), sb.cli(['dump'])]);
      expect([a.exitCode, b.exitCode], a.stderr + b.stderr).toEqual([0, 0]);
      const runs = sb.runDirs().filter((n) => !before.has(n)).map((n) => sb.manifest(n));
      expect(runs).toHaveLength(2);
      runs.sort((x, y) => Date.parse(x.startedAt) - Date.parse(y.startedAt));
      // Serialised: the second started its dumps only after the first had finished.
      expect(Date.parse(runs[1]!.startedAt), `round ${round}`).toBeGreaterThanOrEqual(Date.parse(runs[0]!.finishedAt));
      expect(existsSync(sb.lockPath)).toBe(false);
      expect(existsSync(`${sb.lockPath}.takeover`)).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('a server restarting at night (dumps.retries)', () => {
  it('MariaDB back during the retry wait: the run succeeds with a retry-needed warning (exit 0, summary, status WARNING)', async () => {
    const sb = await sandbox({ config: { dumps: { retries: 5, retry_wait: '1s' } } });
    await servers.mariadb.stop();
    let started = false;
    try {
      const dump = sb.spawnCli(['dump']);
      // The first attempt fails (no socket) and says it will try again; then the server comes back.
      await waitFor('the first failed attempt', () => existsSync(sb.logFile) && readFileSync(sb.logFile, 'utf8').includes('trying again in 1s (dumps.retries)'), 30_000, 50);
      await servers.mariadb.start();
      started = true;
      const r = await dump;
      expect(r.exitCode, String(r.stderr)).toBe(0);
      expect(String(r.stderr)).toMatch(/^apiscp-backup finished with warnings on /);
      expect(String(r.stderr)).toMatch(/mysql: the server answered only at attempt [2-6] \(mysql: cannot connect to the server at /);
      const m = sb.manifest(sb.latest()!);
      expect(m.status).toBe('complete');
      expect(m.servers?.find((s) => s.kind === 'mysql')?.attempts).toBeGreaterThan(1);
      expect(m.entries.find((e) => e.database === 'a_wp')?.status).toBe('ok');
      const st = await sb.cli(['status']);
      expect(st.exitCode, st.stdout).toBe(1);
      expect(st.stdout).toMatch(/^WARNING: mysql: the server answered only at attempt/);
    } finally {
      if (!started) await servers.mariadb.start();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('a prune failure after a good backup is a warning, not a failed backup (restic)', () => {
  it('another restic holding the repository: backup made, forget --prune refused: exit 0, summary, status WARNING', async () => {
    const sb = await sandbox({ config: { databases: { postgresql: { enabled: false } } } });
    const repo = join(sb.root, 'restic-repo');
    const password = join(sb.root, 'etc/apiscp-backup/restic.password');
    writeFileSync(password, 'correct horse\n', { mode: 0o600 });
    const env = { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: password };
    await execa('restic', ['init'], { env });
    sb.writeConfig({ engine: 'restic', restic: { repository: repo, password_file: password }, databases: { postgresql: { enabled: false } } });
    // A second restic (an admin's own backup reading a slow stream) holds a non-exclusive lock:
    // our backup may run beside it, our prune (exclusive) may not.
    const other = execa('restic', ['backup', '--stdin', '--stdin-filename', 'slow.bin'], { env, stdin: 'pipe', reject: false });
    try {
      await waitFor('the other restic to lock the repository', () => existsSync(join(repo, 'locks')) && readdirSync(join(repo, 'locks')).length > 0, 30_000, 100);
      const r = await sb.cli(['run']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^apiscp-backup finished with warnings on /);
      expect(r.stderr).toMatch(/restic: the backup was made, but applying retention to the repository failed: restic forget failed/);
      expect(state(sb)).toMatchObject({ status: 'warning', backup: { status: 'ok' }, warnings: [expect.objectContaining({ code: 'prune-failed' })] });
      expect(state(sb).backup?.id).toMatch(/^[0-9a-f]{8,}/);
      const st = await sb.cli(['status']);
      expect(st.exitCode, st.stdout).toBe(1);
      expect(st.stdout).toMatch(/^WARNING: restic: the backup was made/);
    } finally {
      other.stdin?.end();
      await other;
    }
  });
});
