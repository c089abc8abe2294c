/**
 * Progress on a terminal for `restore files`, `restore site` and `nightly` (issue 28 item 1), through
 * the BUILT CLI against real MariaDB/PostgreSQL servers and a real restic repository: a real
 * terminal (tmux, 120x40) shows the step at work (restic's restore throttled, so the fetch lasts
 * seconds) and one closing line naming what was restored, how much, from which snapshot and run,
 * and how long it took; nightly shows its verification like `verify` and ends with one summary;
 * NO_COLOR=1 gives no colour; under `env -i` with plain pipes no progress is printed.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApiscpTree } from '../../lib/demo/apiscp-tree.js';
import { whichSystem } from '../../lib/proc/which.js';
import { CLI, EXPORT_SCOPE, sandboxPool, TWO_SITES, type Sandbox } from '../helpers/sandbox.js';
import { envOf, keep, screenLines, watchInTerminal } from '../helpers/terminal.js';

const pool = sandboxPool({ sites: TWO_SITES, scopes: { [EXPORT_SCOPE]: false } });
/** restic's restore reads the repository at this rate (KiB/s): BIG_FILE takes about 4 s to fetch. */
const RESTIC_RESTORE_KIB_S = 2048;
const BIG_FILE = 8 * 2 ** 20;

let sb: Sandbox;
let html2: string;
/** PATH with a restic whose `restore` is throttled (--limit-download) first. */
let slowPath: string;
let pw: string;
let repo: string;

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const ESC = /\x1b\[[0-9;]*m/;

function resticSnapshots(): { short_id: string; time: string }[] {
  return JSON.parse(execFileSync('restic', ['snapshots', '--json'], { env: { ...process.env, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: pw }, encoding: 'utf8' })) as { short_id: string; time: string }[];
}

beforeAll(async () => {
  const servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; USE a_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world');
    CREATE DATABASE b_shop; USE b_shop;
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;
    INSERT INTO items SELECT seq, CONCAT('item ', seq) FROM seq_1_to_2000;
  `);
  await servers.postgres.sql('CREATE DATABASE a_pg');
  await servers.postgres.sql("CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'pg note');", 'a_pg');
  sb = await pool.sandbox();
  chmodSync(sb.root, 0o755);
  // Two ApisCP sites under paths.root, each with a file large enough for the throttled fetch.
  await buildApiscpTree(sb.root, { sites: 2 });
  for (const site of ['site1', 'site2']) writeFileSync(join(sb.root, `home/virtual/${site}/shadow/var/www/html/big.bin`), randomBytes(BIG_FILE));
  html2 = join(sb.root, 'home/virtual/site2/shadow/var/www/html');
  pw = join(sb.root, 'etc/apiscp-backup/restic.password');
  repo = join(sb.root, 'repo');
  writeFileSync(pw, 'correct horse\n', { mode: 0o600 });
  sb.writeConfig({ engine: 'restic', restic: { repository: repo, password_file: pw } });
  expect((await sb.cli(['repo-init'])).exitCode).toBe(0);
  const r = await sb.cli(['run']);
  expect(r.exitCode, r.stderr).toBe(0);
  // The throttle: a restic first on PATH that adds --limit-download to a restore (the CLI resolves tools on PATH).
  const bin = join(sb.root, 'slow-bin');
  mkdirSync(bin);
  const real = whichSystem('restic')!;
  writeFileSync(join(bin, 'restic'), `#!/bin/bash\nfor a in "$@"; do [ "$a" = restore ] && exec '${real}' --limit-download ${RESTIC_RESTORE_KIB_S} "$@"; done\nexec '${real}' "$@"\n`, { mode: 0o755 });
  slowPath = `${bin}:/usr/sbin:/usr/bin:/sbin:/bin`;
}, 240_000);

afterAll(() => pool.destroy());

/** verify.schedule nightly verifies once in 20 hours: forgetting the last verification makes it due again. */
const forgetVerifications = (): void => rmSync(join(sb.stateDir, 'verify.json'), { force: true });

const lastRun = (): string => sb.runDirs().filter((r) => !r.endsWith('.inprogress')).at(-1)!;

describe('restore on a terminal', () => {
  it('restore files --target: the fetch step while restic works, then one line: what, how much, from which snapshot, how long', async () => {
    const [snapshot] = resticSnapshots();
    const target = join(sb.root, 'copies');
    const big = join(sb.root, 'home/virtual/site1/shadow/var/www/html/big.bin');
    const { code, screens, end } = await watchInTerminal(['--config', sb.configFile, 'restore', 'files', 'site1', '/var/www/html/big.bin', '--target', target], envOf(sb, { PATH: slowPath }), { escapes: true });
    const plain = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '');
    expect(code, plain(end)).toBe(0);
    const fetching = [...screens].reverse().map(plain).find((s) => new RegExp(`^restore files fetching site1's files from restic snapshot ${snapshot!.short_id}\\s+\\d+\\.\\d s`, 'm').test(s));
    expect(fetching, plain(screens.at(-1)!)).toBeDefined();
    keep('restore-files-fetching', fetching!);
    keep('restore-files-end', plain(end));
    const lines = screenLines(plain(end));
    // The block is gone; the outcome stays, ending with its one closing line.
    expect(lines.some((l) => /^restore files (finding|fetching|copying)/.test(l)), plain(end)).toBe(false);
    const closing = lines.at(-1)!.match(new RegExp(`^restored 1 entry \\((\\d+\\.\\d+) MiB\\) of site1 into ${join(target, 'site1')} from restic snapshot ${snapshot!.short_id} in (\\d+\\.\\d) s$`));
    expect(closing, plain(end)).not.toBeNull();
    expect(Math.abs(Number(closing![1]) - statSync(big).size / 2 ** 20)).toBeLessThan(0.01);
    // Throttled to RESTIC_RESTORE_KIB_S, the fetch alone takes BIG_FILE / rate.
    expect(Number(closing![2])).toBeGreaterThan(BIG_FILE / (RESTIC_RESTORE_KIB_S * 1024) - 0.5);
    expect(sha(join(target, 'site1/shadow/var/www/html/big.bin'))).toBe(sha(big));
    // Colour on a terminal (the step line: the closing line is plain text).
    expect(screens.some((s) => ESC.test(s))).toBe(true);
    rmSync(target, { recursive: true, force: true });
  });

  it('restore site --in-place: the steps as they run (fetch, compare, put back, the database), then one line naming site, entries, bytes, snapshot, run, time', async () => {
    const [snapshot] = resticSnapshots();
    const runId = lastRun();
    // site2 damaged: two files gone, its database emptied.
    const gone = ['big.bin', 'index.html'].map((f) => join(html2, f));
    const bytes = gone.reduce((n, f) => n + statSync(f).size, 0);
    const sums = gone.map(sha);
    for (const f of gone) rmSync(f);
    await sb.servers.mariadb.sql('DELETE FROM b_shop.items WHERE id > 10');
    const { code, screens, end } = await watchInTerminal(['--config', sb.configFile, 'restore', 'site', 'site2', '--in-place'], envOf(sb, { PATH: slowPath }));
    expect(code, end).toBe(0);
    const steps = [...new Set(screens.flatMap((s) => s.split('\n')).map((l) => l.trimEnd().match(/^restore site (.+?)\s+\d+\.\d s$/)?.[1]).filter((x): x is string => Boolean(x)))];
    keep('restore-site-fetching', [...screens].reverse().find((s) => s.includes("restore site fetching site2's files"))!);
    keep('restore-site-end', end);
    console.info(`restore site steps seen: ${JSON.stringify(steps)}`);
    expect(steps, screens.at(-1)).toContain(`fetching site2's files from restic snapshot ${snapshot!.short_id}`);
    const lines = screenLines(end);
    expect(lines.some((l) => /^restore site (finding|fetching|checking|comparing|putting|loading|safety)/.test(l)), end).toBe(false);
    const closing = lines.at(-1)!.match(new RegExp(`^restored site2: 2 entries put back \\((\\d+\\.\\d+) MiB\\), 1 database from restic snapshot ${snapshot!.short_id}, run ${runId} in (\\d+\\.\\d) s$`));
    expect(closing, end).not.toBeNull();
    expect(Math.abs(Number(closing![1]) - bytes / 2 ** 20)).toBeLessThan(0.01);
    expect(gone.map(sha)).toEqual(sums);
    expect((await sb.servers.mariadb.sql('SELECT COUNT(*) FROM b_shop.items')).trim()).toBe('2000');
    // Nothing printed twice: the closing line once, each database line once.
    expect(lines.filter((l) => l.startsWith('restored site2')), end).toHaveLength(1);
    expect(lines.filter((l) => l.includes("mysql database 'b_shop'")), end).toHaveLength(1);
  });

  it('NO_COLOR=1: restore site --target shows its steps without a single colour escape', async () => {
    const target = join(sb.root, 'copies-nocolour');
    const { code, screens, end } = await watchInTerminal(['--config', sb.configFile, 'restore', 'site', 'site1', '--target', target], envOf(sb, { PATH: slowPath, NO_COLOR: '1' }), { escapes: true });
    expect(code, end).toBe(0);
    expect(screens.some((s) => s.includes("restore site fetching site1's files")), screens.at(-1)).toBe(true);
    for (const s of screens) expect(s).not.toMatch(ESC);
    expect(screenLines(end).at(-1)).toMatch(new RegExp(`^restored \\d+ entries \\(\\d+\\.\\d+ MiB\\) and the dumps of 2 databases of site1 into ${join(target, 'site1')} from restic snapshot [0-9a-f]{8}, run ${lastRun()} in \\d+\\.\\d s$`));
    rmSync(target, { recursive: true, force: true });
  });
});

describe('nightly on a terminal', () => {
  it('the job, then its verification (the dump loading now, done of total), one line each, and one summary: run, snapshot, verify outcome', async () => {
    const before = new Set(sb.runDirs());
    const { code, screens, end } = await watchInTerminal(['--config', sb.configFile, 'nightly'], envOf(sb), { timeoutMs: 170_000 });
    expect(code, end).toBe(0);
    const runId = sb.runDirs().find((r) => !before.has(r) && !r.endsWith('.inprogress'))!;
    expect(runId).toBeTruthy();
    const manifest = sb.manifest(runId);
    const inFlight = [...screens].reverse().find((s) => /^nightly verifying\s+\d+\/\d+ dumps/m.test(s) && /› mysql (a_wp|b_shop) \(site[12]\)\s+loading \d+\.\d s\s+\(dump \d+(\.\d+)? (B|KiB|MiB)\)/.test(s));
    expect(inFlight, screens.filter((s) => s.includes('verif')).at(-1) ?? screens.at(-1)).toBeDefined();
    keep('nightly-verifying', inFlight!);
    keep('nightly-end', end);
    // What nightly verifies: the server-wide exports and verify.sample (3) of the databases.
    const databases = manifest.entries.filter((e) => e.object === 'database' && e.status === 'ok').length;
    const checked = manifest.entries.filter((e) => e.object !== 'database' && e.status === 'ok' && e.path).length + Math.min(3, databases);
    const total = Number(inFlight!.match(/^nightly verifying\s+\d+\/(\d+) dumps/m)![1]);
    expect(total).toBe(checked);
    const lines = screenLines(end);
    expect(lines.some((l) => l.includes('›')), end).toBe(false);
    // One line per event, none twice.
    expect(new Set(lines).size, end).toBe(lines.length);
    expect(lines.filter((l) => /^dumps\s/.test(l)), end).toHaveLength(1);
    expect(lines.filter((l) => /^backup\s+restic backup took \d+\.\d s$/.test(l)), end).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('verify')), end).toEqual([expect.stringMatching(new RegExp(`^verify\\s+${checked} of ${checked} dump\\(s\\) verified, 0 failed in \\d+\\.\\d s$`))]);
    const snapshot = resticSnapshots().at(-1)!;
    const written = manifest.entries.filter((e) => e.status === 'ok').length;
    expect(lines.at(-1), end).toMatch(new RegExp(`^${written} dump\\(s\\) written to ${join(sb.dumpsDir, runId)}; restic backup ${snapshot.short_id} \\([^)]+ added\\); verify: ${checked} of ${checked} dump\\(s\\) ok$`));
  });

  it('NO_COLOR=1: nightly without a single colour escape', async () => {
    forgetVerifications();
    const { code, screens, end } = await watchInTerminal(['--config', sb.configFile, 'nightly'], envOf(sb, { NO_COLOR: '1' }), { escapes: true, timeoutMs: 170_000 });
    expect(code, end).toBe(0);
    expect(screens.some((s) => s.includes('nightly verifying')) || screenLines(end).some((l) => l.startsWith('verify'))).toBe(true);
    for (const s of [...screens, end]) expect(s).not.toMatch(ESC);
  });
});

describe('no progress without a terminal', () => {
  it('env -i with plain pipes: restore files and restore site print their outcome only, nightly nothing; each exits 0', async () => {
    const cronEnv = Object.entries(envOf(sb, { PATH: slowPath })).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    const piped = (args: readonly string[]) => execa('env', ['-i', ...cronEnv, process.execPath, CLI, '--config', sb.configFile, ...args], { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
    const target = join(sb.root, 'copies-piped');
    const files = await piped(['restore', 'files', 'site1', '/var/www/html/big.bin', '--target', target]);
    expect({ code: files.exitCode, err: String(files.stderr) }).toEqual({ code: 0, err: '' });
    // The result asked for, on stdout: no step, no time, no escape.
    expect(String(files.stdout)).toMatch(/^restore files of site1 from restic snapshot [0-9a-f]{8} \(.*\):\n  copied into .*\nrestored 1 entry \(\d+\.\d+ MiB\) of site1 into \S+ from restic snapshot [0-9a-f]{8}$/);
    rmSync(html2 + '/index.html');
    const site = await piped(['restore', 'site', 'site2', '--in-place']);
    expect({ code: site.exitCode, err: String(site.stderr) }).toEqual({ code: 0, err: '' });
    expect(String(site.stdout)).not.toMatch(/fetching|comparing|putting back| s$|\x1b/m);
    expect(String(site.stdout).split('\n').at(-1)).toMatch(/^restored site2: 1 entry put back \(\d+(\.\d+)? (B|KiB)\), 1 database from restic snapshot [0-9a-f]{8}, run \S+$/);
    const newest = lastRun();
    forgetVerifications();
    const nightly = await piped(['nightly']);
    expect({ code: nightly.exitCode, out: String(nightly.stdout), err: String(nightly.stderr) }).toEqual({ code: 0, out: '', err: '' });
    // It really ran: a new run directory, and its verification recorded.
    expect(lastRun()).not.toBe(newest);
    const verified = JSON.parse(readFileSync(join(sb.stateDir, 'verify.json'), 'utf8')) as { lastRun?: { runId: string } };
    expect(verified.lastRun?.runId).toBe(lastRun());
  });
});
