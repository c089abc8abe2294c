/**
 * Progress on a terminal, silence under cron (issue 28 item 1), through the BUILT CLI against
 * real MariaDB/PostgreSQL servers: a real terminal (tmux, 120x40) shows the database being dumped
 * with its bytes while it runs and a summary naming the run at the end; NO_COLOR=1 gives no
 * colour; under `env -i` with plain pipes (cron) a successful run prints nothing.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, EXPORT_SCOPE, sandboxPool, TWO_SITES, waitFor, type Sandbox } from '../helpers/sandbox.js';
import { envOf, keep, Terminal } from '../helpers/terminal.js';

const pool = sandboxPool({ sites: { ...TWO_SITES, site3: { mysql: ['c_big'] } } });
/** The big database's rows: ~5 MiB of base64, dumped at dumps.max_rate 1M so it is in flight for seconds. */
const BIG_ROWS = 4000;

beforeAll(async () => {
  const servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; USE a_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world');
    CREATE DATABASE b_shop; USE b_shop;
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;
    INSERT INTO items VALUES (1, 'widget');
    CREATE DATABASE c_big; USE c_big;
    CREATE TABLE blobs (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB;
    INSERT INTO blobs SELECT seq, TO_BASE64(RANDOM_BYTES(1024)) FROM seq_1_to_${BIG_ROWS};
  `);
  await servers.postgres.sql('CREATE DATABASE a_pg');
  await servers.postgres.sql("CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'pg note');", 'a_pg');
});

afterAll(() => pool.destroy());

describe('progress on a terminal', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    // One dump at a time and slowed down: c_big (dumped first, the previous run says it is the largest) stays on screen.
    sb = await pool.sandbox({ config: { dumps: { max_rate: '1M', concurrency: 1 } } });
    // A first run, so that the second knows last night's sizes (the time left).
    const first = await sb.cli(['dump']);
    expect(first.exitCode, first.stderr).toBe(0);
  }, 240_000);

  it('dump: the database in flight with its bytes and rate, the time left; at the end the summary names the run', async () => {
    const term = new Terminal();
    try {
      const before = new Set(sb.runDirs());
      term.start(['--config', sb.configFile, 'dump'], envOf(sb));
      // While c_big is being dumped: its line carries a byte count and a rate.
      const inFlight = await waitFor('c_big in flight with bytes', () => {
        const screen = term.capture();
        return /› mysql c_big \(site3\)\s+\d+(\.\d+)? (KiB|MiB)\s+\d+(\.\d+)? (KiB|MiB|B)\/s/.test(screen) ? screen : undefined;
      }, 60_000, 100);
      keep('dump-in-flight', inFlight);
      expect(inFlight).toMatch(/dump dumping\s+\d+\/\d+ databases\s+\d+(\.\d+)? (B|KiB|MiB)/);
      // The previous run's sizes give a time left and c_big's size last time.
      expect(inFlight).toMatch(/about \d+(\.\d+)? s left|about \d+ min/);
      expect(inFlight).toMatch(/c_big \(site3\).*\(last run \d+(\.\d+)? MiB\)/);
      const code = await waitFor('the dump to end', () => term.exitCode(), 120_000, 200);
      const end = term.capture();
      keep('dump-end', end);
      expect(code, end).toBe(0);
      const runId = sb.runDirs().find((r) => !before.has(r) && !r.endsWith('.inprogress'))!;
      expect(runId).toBeTruthy();
      const ok = sb.manifest(runId).entries.filter((e) => e.status === 'ok');
      const total = ok.reduce((n, e) => n + (e.bytes ?? 0), 0);
      const lines = end.split('\n').map((l) => l.trimEnd()).filter(Boolean);
      // The live block is gone: the phase's line (what, how much, how long) and where it went remain.
      expect(lines.some((l) => l.includes('›')), end).toBe(false);
      const phase = lines.at(-2)!.match(/^dumps\s+(\d+) of (\d+) database dump\(s\), (\d+(?:\.\d+)?) MiB in (\d+\.\d) s$/);
      expect(phase, end).not.toBeNull();
      expect([Number(phase![1]), Number(phase![2])]).toEqual([ok.length, ok.length]);
      // The size the manifest holds, to the display's rounding.
      expect(Math.abs(Number(phase![3]) - total / 2 ** 20)).toBeLessThan(0.01);
      // c_big alone takes seconds at 1 MiB/s.
      expect(Number(phase![4])).toBeGreaterThan(2);
      expect(lines.at(-1), end).toBe(`${ok.length} dump(s) written to ${join(sb.dumpsDir, runId)}`);
      // Colour on a terminal: the escapes reach the screen.
      expect(term.capture(true)).toMatch(/\x1b\[1m/);
    } finally {
      term.kill();
    }
  });

  it('NO_COLOR=1: the same progress without a single colour escape', async () => {
    const term = new Terminal();
    try {
      term.start(['--config', sb.configFile, 'dump'], envOf(sb, { NO_COLOR: '1' }));
      const screens: string[] = [];
      await waitFor('c_big in flight', () => {
        const screen = term.capture(true);
        screens.push(screen);
        return screen.includes('mysql c_big') ? screen : undefined;
      }, 60_000, 100);
      const code = await waitFor('the dump to end', () => term.exitCode(), 120_000, 200);
      screens.push(term.capture(true));
      expect(code).toBe(0);
      // capture-pane -e prints the attributes the terminal holds: none were set.
      for (const s of screens) expect(s).not.toMatch(/\x1b\[[0-9;]*m/);
    } finally {
      term.kill();
    }
  });
});

describe('run on a terminal: the engine phase with its own progress', () => {
  it('restic: its status (percent, bytes, files) while it backs up; at the end the phase line and the snapshot id', async () => {
    const sb = await pool.sandbox();
    const pw = join(sb.root, 'etc/apiscp-backup/restic.password');
    mkdirSync(dirname(pw), { recursive: true });
    writeFileSync(pw, 'correct horse\n', { mode: 0o600 });
    sb.writeConfig({ engine: 'restic', restic: { repository: join(sb.root, 'repo'), password_file: pw }, databases: { mysql: { include: ['a_wp'] }, postgresql: { enabled: false } } });
    expect((await sb.cli(['repo-init'])).exitCode).toBe(0);
    // Something for restic to take a few seconds over: 96 MiB that do not deduplicate.
    mkdirSync(sb.dumpsDir, { recursive: true });
    writeFileSync(join(sb.dumpsDir, 'ballast.bin'), randomBytes(96 * 2 ** 20));
    const term = new Terminal();
    try {
      term.start(['--config', sb.configFile, 'run'], envOf(sb));
      const screens: string[] = [];
      const code = await waitFor('run to end', () => {
        screens.push(term.capture());
        return term.exitCode();
      }, 170_000, 50);
      const end = term.capture();
      expect(code, end).toBe(0);
      const status = screens.find((s) => /run restic backup\s+\d+%, \d+\.\d\d MiB of \d+\.\d\d MiB, \d+ of \d+ files/.test(s));
      keep('run-restic-status', status ?? screens.at(-1)!);
      keep('run-end', end);
      expect(status, screens.filter((s) => s.includes('restic')).at(-1)).toBeDefined();
      const lines = end.split('\n').map((l) => l.trimEnd()).filter(Boolean);
      expect(lines).toContainEqual(expect.stringMatching(/^backup\s+restic backup took \d+\.\d s$/));
      const runId = sb.runDirs().filter((r) => !r.endsWith('.inprogress')).at(-1)!;
      const snapshots = JSON.parse(execFileSync('restic', ['snapshots', '--json'], { env: { ...process.env, RESTIC_REPOSITORY: join(sb.root, 'repo'), RESTIC_PASSWORD_FILE: pw }, encoding: 'utf8' })) as { short_id: string }[];
      expect(snapshots).toHaveLength(1);
      expect(lines.at(-1), end).toMatch(new RegExp(`^\\d+ dump\\(s\\) written to ${join(sb.dumpsDir, runId)}; restic backup ${snapshots[0]!.short_id} \\(`));
    } finally {
      term.kill();
    }
  });
});

describe('verify and restore db on a terminal', () => {
  let sb: Sandbox;
  let runId: string;
  beforeAll(async () => {
    sb = await pool.sandbox({ config: { databases: { mysql: { include: ['c_big', 'a_wp'] }, postgresql: { enabled: false } } } });
    const r = await sb.cli(['dump']);
    expect(r.exitCode, r.stderr).toBe(0);
    runId = sb.runDirs().at(-1)!;
  }, 240_000);

  /** Run the CLI in the terminal, capturing the screen every 50 ms until it exits. */
  async function watchRun(args: readonly string[]): Promise<{ code: number; screens: string[]; end: string }> {
    const term = new Terminal();
    try {
      term.start(['--config', sb.configFile, ...args], envOf(sb));
      const screens: string[] = [];
      const code = await waitFor(`${args.join(' ')} to end`, () => {
        screens.push(term.capture());
        return term.exitCode();
      }, 150_000, 50);
      return { code, screens, end: term.capture() };
    } finally {
      term.kill();
    }
  }

  it('verify: the dump being loaded now, then one line per dump and the verdict', async () => {
    const { code, screens, end } = await watchRun(['verify', '--run', runId]);
    expect(code, end).toBe(0);
    const bigSize = sb.manifest(runId).entries.find((e) => e.database === 'c_big')!.bytes!;
    // Seen while its throwaway server starts and the dump loads: what, where, for how long, its size.
    const inFlight = screens.find((s) => /verify verifying\s+\d+\/\d+ dumps/.test(s) && /› mysql c_big \(site3\)\s+loading \d+\.\d s\s+\(dump \d+(\.\d+)? MiB\)/.test(s));
    expect(inFlight, screens.at(-1)).toBeDefined();
    keep('verify-in-flight', inFlight!);
    keep('verify-end', end);
    // Its size is the manifest's, to the display's rounding.
    const shown = Number(inFlight!.match(/c_big \(site3\).*\(dump (\d+(?:\.\d+)?) MiB\)/)![1]);
    expect(Math.abs(shown - bigSize / 2 ** 20)).toBeLessThan(0.01);
    const lines = end.split('\n').map((l) => l.trimEnd()).filter(Boolean);
    expect(lines.some((l) => l.includes('›')), end).toBe(false);
    expect(lines.filter((l) => l.includes('site3/c_big')), end).toHaveLength(1);
    expect(lines.at(-1), end).toMatch(new RegExp(`^verify of run ${runId}: (\\d+) of \\1 dump\\(s\\) verified, 0 failed`));
  });

  it('restore db: each step as it runs, then what was restored, from which run, how long', async () => {
    const { code, screens, end } = await watchRun(['restore', 'db', 'c_big', '--force']);
    expect(code, end).toBe(0);
    const steps = screens.filter((s) => /restore db (safety dump of|loading|comparing) mysql 'c_big'/.test(s));
    expect(steps.length, screens.at(-1)).toBeGreaterThan(0);
    keep('restore-step', steps.at(-1)!);
    keep('restore-end', end);
    expect(end).toMatch(new RegExp(`restored mysql database 'c_big' from local run ${runId} \\(replaced\\) in \\d+\\.\\d s`));
    // The step line is gone once it is done.
    expect(end).not.toMatch(/restore db (finding|checking|safety dump|loading|comparing)/);
  });
});

describe('silence under cron', () => {
  it('env -i with plain pipes: dump and run print nothing and exit 0', async () => {
    const sb = await pool.sandbox();
    // The panel's own nightly export off, as after the first night: turning it off is a warning cron must mail.
    sb.writePanelState({ ...sb.readPanelState(), scopes: { [EXPORT_SCOPE]: false } });
    const cronEnv = Object.entries(envOf(sb)).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    for (const args of [['dump'], ['run']]) {
      const r = await execa('env', ['-i', ...cronEnv, process.execPath, CLI, '--config', sb.configFile, ...args], { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
      expect({ args, code: r.exitCode, out: String(r.stdout), err: String(r.stderr) }).toEqual({ args, code: 0, out: '', err: '' });
    }
    // Both really ran: two run directories.
    expect(sb.runDirs().filter((r) => !r.endsWith('.inprogress'))).toHaveLength(2);
  });
});
