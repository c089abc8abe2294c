/**
 * `status` sees every run (issue 26), through the BUILT CLI against a real MariaDB: a `dump` at
 * work shows in `status --json` (phase, databases done of total, bytes); a `dump` killed by
 * SIGKILL shows as died until the next `dump` takes its lock over at once, clears what it left,
 * says so once and is recorded. Tests run in order on one sandbox: each names what it builds on.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunProgress } from '../../lib/report/run-progress.js';
import type { RunState } from '../../lib/report/run-state.js';
import { secretDirParent } from '../../lib/secret-dir.js';
import { EXPORT_SCOPE, sandboxPool, waitFor, type Sandbox } from '../helpers/sandbox.js';
import { isRunning } from '../helpers/processes.js';

const DATABASES = ['big', 'small1', 'small2'];
// The panel's exports already off and no verification: status says OK about a good run.
const pool = sandboxPool({
  sites: { site1: { mysql: DATABASES } },
  scopes: { [EXPORT_SCOPE]: false },
  config: { databases: { postgresql: { enabled: false } }, lock: { wait: '10m' }, verify: { schedule: 'off' } },
});
let sb: Sandbox;

beforeAll(async () => {
  const servers = await pool.start();
  // ~160 MB of random bytes: the big dump (hex, zstd) takes seconds, long enough to watch.
  await servers.mariadb.sql(`
    CREATE DATABASE big; USE big;
    CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB;
    INSERT INTO t(b) SELECT CONCAT(${Array(64).fill('RANDOM_BYTES(1024)').join(',')}) FROM seq_1_to_2500;
    CREATE DATABASE small1; CREATE TABLE small1.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO small1.t VALUES (1);
    CREATE DATABASE small2; CREATE TABLE small2.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO small2.t VALUES (2);
  `);
  sb = await pool.sandbox();
});
afterAll(() => pool.destroy());

const progressFile = (): string => join(sb.stateDir, 'running.json');
function readProgress(): RunProgress | undefined {
  try {
    return JSON.parse(readFileSync(progressFile(), 'utf8')) as RunProgress;
  } catch {
    return undefined;
  }
}

/** Every process below `pid` (the CLI's spawner workers, dumpers, compressors). */
async function descendants(pid: number): Promise<number[]> {
  const r = await execa('ps', ['-o', 'pid=', '--ppid', String(pid)], { reject: false });
  const kids = String(r.stdout).split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
  return [...kids, ...(await Promise.all(kids.map(descendants))).flat()];
}

/** What a dead run can leave: unfinished run directories, its secret directories, temp files, the progress file, the lock. */
function leftoversOf(pid: number): string[] {
  const found = [
    ...readdirSync(sb.dumpsDir).filter((n) => n.endsWith('.inprogress')),
    ...readdirSync(secretDirParent(sb.tmpDir)).filter((n) => n.startsWith(`asb-mysql-${pid}-`)),
    ...readdirSync(sb.stateDir).filter((n) => n.includes('.tmp-')),
  ];
  if (existsSync(progressFile())) found.push('running.json');
  if (existsSync(sb.lockPath)) found.push('lock');
  return found;
}

const status = async (): Promise<{ exitCode: number; json: Record<string, unknown>; text: string }> => {
  const [j, t] = await Promise.all([sb.cli(['status', '--json']), sb.cli(['status'])]);
  return { exitCode: t.exitCode, json: JSON.parse(String(j.stdout)) as Record<string, unknown>, text: String(t.stdout) };
};

describe('status sees runs at work and runs that died', () => {
  let deadPid = 0;
  let deadStartedAt = '';

  it('a first good dump: status OK, nothing running, no progress file left', async () => {
    const r = await sb.cli(['dump']);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const s = await status();
    expect(s.exitCode, s.text).toBe(0);
    expect(s.json.running).toBeNull();
    expect(existsSync(progressFile())).toBe(false);
  });

  it('while a dump works, status --json shows it running (phase, databases done of total, bytes); the verdict stays OK; then kill -9', async () => {
    const child = sb.spawnCli(['dump']);
    // The small databases are done and the big one is being written.
    const seen = await waitFor('the dump to report progress', () => {
      const p = readProgress();
      return p?.phase === 'dumps' && p.dumps && p.dumps.done >= 2 && p.dumps.done < p.dumps.total ? p : undefined;
    }, 60_000);
    expect(seen.process.pid).toBe(child.pid);
    const s = await status();
    expect(s.exitCode, s.text).toBe(0);
    const running = s.json.running as Record<string, unknown> & { databases: { done: number; total: number } };
    expect(running).toMatchObject({ pid: child.pid, phase: 'dumps', command: 'apiscp-backup dump', since: seen.startedAt });
    expect(running.databases.total).toBe(DATABASES.length + 1); // + the server-wide users dump
    expect(running.databases.done).toBeGreaterThanOrEqual(2);
    expect(running.databases.done).toBeLessThan(running.databases.total);
    expect(typeof running.bytes).toBe('number');
    expect(s.text).toMatch(new RegExp(`^running: apiscp-backup dump since ${seen.startedAt} .*pid ${child.pid}, phase dumps, databases \\d/${running.databases.total}`, 'm'));

    // SIGKILL: no handler runs. Its orphans (the dumper and compressor of the big database)
    // are killed too: what they do after their parent died is not what this test is about.
    // Still dumping the big database when killed (else this would test another phase).
    expect(readdirSync(sb.dumpsDir).filter((n) => n.endsWith('.inprogress'))).toHaveLength(1);
    const below = await descendants(child.pid!);
    process.kill(child.pid!, 'SIGKILL');
    for (const pid of below) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const r = await child;
    expect(r.signal).toBe('SIGKILL');
    await waitFor('the orphans to go', () => below.every((p) => !isRunning(p)), 10_000);
    deadPid = child.pid!;
    deadStartedAt = seen.startedAt;
  });

  it('after the kill -9 (builds on it): status exits 2 with "died (pid …, last phase …)"', async () => {
    // What SIGKILL left: the lock, the progress file, the unfinished run directory, the option file's directory.
    const left = leftoversOf(deadPid);
    expect(left).toEqual(expect.arrayContaining(['lock', 'running.json']));
    expect(left.filter((n) => n.endsWith('.inprogress'))).toHaveLength(1);
    expect(left.filter((n) => n.startsWith(`asb-mysql-${deadPid}-`))).toHaveLength(1);
    const s = await status();
    expect(s.exitCode, s.text).toBe(2);
    expect(s.text.split('\n')[0]).toBe(`CRITICAL: the run started at ${deadStartedAt} died (pid ${deadPid}, last phase dumps) | ${s.text.split('\n')[0]!.split(' | ')[1]}`);
    expect(s.json.died).toMatchObject({ pid: deadPid, phase: 'dumps' });
    expect(s.json.running).toBeNull();
  });

  it('the next dump takes over at once, says so once, leaves nothing of the dead run; status is no longer CRITICAL, and OK after the run that follows', async () => {
    const r = await sb.cli(['dump']);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const said = String(r.stderr).split(`died (pid ${deadPid}`).length - 1;
    expect(said, String(r.stderr)).toBe(1);
    expect(readFileSync(sb.logFile, 'utf8')).not.toContain('waiting for the lock');
    expect(leftoversOf(deadPid)).toEqual([]);
    const state = JSON.parse(readFileSync(sb.statusFile, 'utf8')) as RunState;
    expect(state.status).toBe('warning');
    expect(state.warnings?.filter((w) => w.code === 'run-died')).toHaveLength(1);
    const s = await status();
    expect(s.exitCode, s.text).toBe(1); // WARNING: the run that took over says what it found
    expect(s.text.split('\n')[0]).toContain(`the run started at ${deadStartedAt} died (pid ${deadPid}, last phase dumps)`);

    const again = await sb.cli(['dump']);
    expect(again.exitCode, String(again.stderr)).toBe(0);
    expect(String(again.stderr)).toBe('');
    expect((await status()).exitCode).toBe(0);
  });

  it('a holder file naming a live pid whose start time differs (pid 1, reused) is dead: status says so, the next dump takes over', async () => {
    const real = readFileSync('/proc/1/stat', 'utf8');
    const startTime = real.slice(real.lastIndexOf(')') + 2).split(' ')[19]!;
    const holder = { pid: 1, host: hostname(), command: 'apiscp-backup dump', started: '2026-12-01T03:00:00.000Z', startTime: String(Number(startTime) + 4242), bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() };
    mkdirSync(sb.lockPath);
    writeFileSync(`${sb.lockPath}.holder.json`, JSON.stringify(holder));
    const s = await status();
    expect(s.exitCode, s.text).toBe(2);
    expect(s.text.split('\n')[0]).toMatch(/^CRITICAL: the run started at 2026-12-01T03:00:00.000Z died \(pid 1, last phase unknown\)/);
    const r = await sb.cli(['dump']);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stderr)).toContain('died (pid 1, last phase unknown)');
    expect(existsSync(sb.lockPath)).toBe(false);
    expect(existsSync(`${sb.lockPath}.holder.json`)).toBe(false);
  });
});

describe('a job that found the lock busy', () => {
  it('pre-backup exits 3; status and the post-backup hook name the busy lock and its holder, not an engine error nor the holder\'s dumps', async () => {
    // The stand-in panel answers slowly: the first run holds the lock for a few seconds.
    const busySb = await pool.sandbox({ quirks: { delayMs: 1500 }, config: { lock: { wait: '1s' } } });
    const first = busySb.spawnCli(['dump']);
    await waitFor('the first run to take the lock', () => existsSync(`${busySb.lockPath}.holder.json`), 20_000);
    const pre = await busySb.cli(['hook', 'pre-backup', '--engine', 'bacula', '--level', 'Full', '--jobid', '8', '--job', 'ApisCP']);
    expect(pre.exitCode, String(pre.stderr)).toBe(3);
    const r1 = await first;
    expect(r1.exitCode, String(r1.stderr)).toBe(0);
    const holderRun = busySb.latest();

    const s = await busySb.cli(['status']);
    expect(s.exitCode, String(s.stdout)).toBe(2);
    expect(String(s.stdout).split('\n')[0]).toMatch(new RegExp(`^CRITICAL: apiscp-backup hook pre-backup \\(job 8\\) at \\S+ did not run: another run holds ${busySb.lockPath}: pid ${first.pid} \\(apiscp-backup dump`));

    // Bacula runs the after-job script anyway, with the job's failure.
    const post = await busySb.cli(['hook', 'post-backup', '--engine', 'bacula', '--status', 'Error', '--jobid', '8', '--job', 'ApisCP']);
    expect(post.exitCode, String(post.stderr)).toBe(3);
    expect(String(post.stderr)).toContain(`did not run: another run holds ${busySb.lockPath}: pid ${first.pid}`);
    const state = JSON.parse(readFileSync(busySb.statusFile, 'utf8')) as RunState;
    expect(state.status).toBe('failed');
    expect(state.job?.id).toBe('8');
    expect(state.runId).toBeUndefined(); // not the holder's run
    expect(state.dumps).toBeUndefined();
    expect(holderRun).toBeDefined();
    const after = await busySb.cli(['status']);
    expect(after.exitCode).toBe(2);
    expect(String(after.stdout)).toContain(`did not run: another run holds ${busySb.lockPath}: pid ${first.pid}`);
  });
});

describe('the dump tools a run killed by SIGKILL left running', () => {
  /** pid and argv of every process below `pid`. */
  async function below(pid: number): Promise<{ pid: number; args: string }[]> {
    const r = await execa('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { reject: false });
    const kids = String(r.stdout).split('\n').map((l) => l.trim()).filter(Boolean).map((l) => ({ pid: Number(l.split(' ')[0]), args: l.slice(l.indexOf(' ') + 1) }));
    return [...kids, ...(await Promise.all(kids.map((k) => below(k.pid)))).flat()];
  }

  it('are killed by the run that takes over, which says so once; a recorded pid now someone else\'s is left alone', async () => {
    // pg_dump writes its file itself (no pipe through us): after a SIGKILL of the CLI it dumps on
    // without it. ~250 MB of hex text keep it busy for seconds.
    const pg = sb.servers.postgres;
    await pg.sql('CREATE DATABASE site1_pg');
    await pg.sql('CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text) AS v FROM generate_series(1, 2000000) g', 'site1_pg');
    const osb = await pool.sandbox({
      sites: { site1: { mysql: ['small1'], pgsql: ['site1_pg'] } },
      config: { databases: { postgresql: { enabled: true } } },
    });
    const file = join(osb.stateDir, 'running.json');
    const stranger = execa('sleep', ['300'], { detached: true, reject: false });
    try {
      const child = osb.spawnCli(['dump']);
      const stuck = await waitFor('pg_dump at work, recorded in the progress file', async () => {
        let recorded: RunProgress | undefined;
        try {
          recorded = JSON.parse(readFileSync(file, 'utf8')) as RunProgress;
        } catch {
          return undefined;
        }
        const groups = new Set(recorded.groups?.map((g) => g.pgid));
        const tools = (await below(child.pid!)).filter((p) => /pg_dump/.test(p.args));
        return tools.some((t) => groups.has(t.pid)) ? tools : undefined;
      }, 60_000, 200);
      // Stopped, so that none finishes its dump before the takeover on a fast machine: a stopped
      // process is as alive (and as much an orphan) as a running one.
      for (const t of stuck) process.kill(t.pid, 'SIGSTOP');
      process.kill(child.pid!, 'SIGKILL');
      expect((await child).signal).toBe('SIGKILL');
      await new Promise((r) => setTimeout(r, 1000));
      // Orphans now: their parent gone, still there.
      for (const t of stuck) expect(isRunning(t.pid), `${t.pid} ${t.args}`).toBe(true);

      // A recorded group whose leader's pid now runs something else (same pid, another start time).
      const progress = JSON.parse(readFileSync(file, 'utf8')) as RunProgress;
      const realStart = readFileSync(`/proc/${stranger.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]!;
      writeFileSync(file, JSON.stringify({ ...progress, groups: [...(progress.groups ?? []), { pgid: stranger.pid, startTime: String(Number(realStart) - 1) }] }));

      // The next run, without PostgreSQL: it must not leave the orphans running.
      osb.writeConfig({ databases: { postgresql: { enabled: false } }, lock: { wait: '10m' }, verify: { schedule: 'off' } });
      const r = await osb.cli(['dump']);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      for (const t of stuck) expect(isRunning(t.pid), `${t.pid} ${t.args}`).toBe(false);
      expect(isRunning(stranger.pid!), 'the process that now has a recorded pid').toBe(true);
      const said = String(r.stderr).match(/killed \d+ process\(es\) it left running \([^)]*\)/g) ?? [];
      expect(said, String(r.stderr)).toHaveLength(1);
      expect(said[0]).toMatch(/pg_dump/);
    } finally {
      stranger.kill('SIGKILL');
      await pg.sql('DROP DATABASE site1_pg WITH (FORCE)');
    }
  });
});
