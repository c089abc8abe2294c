/**
 * A cancelled Bacula job stops our hook (issue 26 item 1). Real Bacula 9.6 daemons run the REAL
 * hook as the ClientRunBeforeJob (`apiscp-backup bacula config`'s fragment, as an admin installs
 * it); it dumps a database slowed by dumps.max_rate; `cancel jobid=N` in bconsole. Bacula sends
 * the hook no signal (docs/bacula-cancel.md): the hook must notice by itself, stop within 10 s,
 * leave no process, lock, secret or partial dump, and the next job must run at once.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { buildApiscpTree } from '../../lib/demo/apiscp-tree.js';
import { jobOutcome, queueJob, startBacula, type BaculaHarness } from '../harness/bacula.js';
import { cli, CLI, NODE, readStatus, rmrf, writeConfig } from '../helpers/e2e.js';
import { isRunning } from '../helpers/processes.js';
import { waitFor } from '../helpers/sandbox.js';

const base = mkdtempSync(join(tmpdir(), 'bacula-cancel-'));
chmodSync(base, 0o755);
const root = join(base, 'root');
const configFile = join(base, 'etc/config.yaml');
let servers: Servers;
let h: BaculaHarness;
let loaded: LoadedConfig;

/** The hook's config: only `databases`, at `rate` (the director's fragment names this file). */
function configure(databases: string[], rate: string): void {
  writeConfig(configFile, {
    root, servers, engine: 'bacula',
    extra: {
      databases: {
        mysql: { enabled: true, socket: servers.mariadb.socket, defaults_file: join(root, 'no-my.cnf'), include: databases, dump_users: false },
        postgresql: { enabled: false },
      },
      dumps: { retry_wait: '200ms', max_rate: rate },
    },
  });
}

beforeAll(async () => {
  servers = await startServers();
  // ~40 MB of random bytes, ~80 MB of hex SQL: 20 s at 4M a second, cancelled long before.
  await servers.mariadb.sql(`
    CREATE DATABASE big; USE big; CREATE TABLE big.t (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB;
    INSERT INTO big.t SELECT seq, CONCAT(${Array(16).fill('RANDOM_BYTES(1024)').join(',')}) FROM seq_1_to_2500;
    CREATE DATABASE small; CREATE TABLE small.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO small.t VALUES (1);
  `);
  await buildApiscpTree(root, { sites: 1 });
  configure(['big'], '4M');
  loaded = loadConfig({ file: configFile });
  const fragment = await cli(['--config', configFile, 'bacula', 'config', '--node', NODE, '--entry', CLI]);
  expect(fragment.code, fragment.stderr).toBe(0);
  h = await startBacula({ extraDirectorConfig: fragment.stdout });
});

afterAll(async () => {
  await h?.stop();
  await servers?.destroy();
  rmrf(base);
});

/**
 * This test's hook of job `jobId` (pre-backup, post-backup or either), as a pgrep -f pattern. Its
 * config is in it: other test files run Bacula jobs with the same JobIds at the same time.
 */
const hookOf = (jobId: number, which = '(pre|post)-backup'): string => `--config ${configFile.replace(/[.]/g, '\\.')} hook ${which} .*--jobid ${jobId} --job`;

/** pid and argv of every process whose argv holds `needle` (the hook of one job). */
async function processes(needle: string): Promise<{ pid: number; cmd: string }[]> {
  const r = await run(cmd('pgrep', ['-a', '-f', '--', needle]), { exitClass: exitClasses({ ok: [1] }) });
  return r.stdout.split('\n').filter(Boolean).map((l) => ({ pid: Number(l.split(' ')[0]), cmd: l.slice(l.indexOf(' ') + 1) }));
}

/** Every descendant of `pid` now. */
async function descendants(pid: number): Promise<{ pid: number; cmd: string }[]> {
  const out: { pid: number; cmd: string }[] = [];
  const queue = [pid];
  while (queue.length) {
    const r = await run(cmd('pgrep', ['-a', '-P', String(queue.shift())]), { exitClass: exitClasses({ ok: [1] }) });
    for (const l of r.stdout.split('\n').filter(Boolean)) {
      const child = { pid: Number(l.split(' ')[0]), cmd: l.slice(l.indexOf(' ') + 1) };
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

/** The pre-backup hook of job `jobId` once it writes the big database (its dumper runs, its run directory is unfinished). */
async function hookDumping(jobId: number): Promise<{ pid: number; cmd: string; below: { pid: number; cmd: string }[] }> {
  return waitFor('the hook to dump', async () => {
    const [p] = (await processes(`${CLI} ${hookOf(jobId, 'pre-backup')}`)).filter((x) => x.cmd.startsWith(NODE));
    if (!p) return undefined;
    const below = await descendants(p.pid);
    const writing = existsSync(loaded.paths.dumpsDir) && readdirSync(loaded.paths.dumpsDir).some((n) => n.endsWith('.inprogress'));
    return writing && below.some((d) => /mariadb-dump|mysqldump/.test(d.cmd)) ? { ...p, below } : undefined;
  }, 60_000, 200);
}

const secretDirsOf = (pid: number): string[] =>
  ['/dev/shm', tmpdir()].flatMap((d) => (existsSync(d) ? readdirSync(d).filter((n) => n.startsWith(`asb-mysql-${pid}-`)) : []));

describe('cancel jobid=N while the hook dumps', () => {
  test('the hook stops within 10 s: no process, lock, secret or partial dump left; state and log say "cancelled by Bacula (job N)"; the next job runs at once', async () => {
    const jobId = await queueJob(h.bconsole, 'ApisCP', 'Full');
    const hook = await hookDumping(jobId);
    // Parent: the file daemon, which started it by execvp.
    const ppid = Number(readFileSync(`/proc/${hook.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    expect(readFileSync(`/proc/${ppid}/comm`, 'utf8').trim()).toBe('bacula-fd');
    expect(secretDirsOf(hook.pid)).toHaveLength(1);

    const cancelledAt = Date.now();
    const said = await h.bconsole(`cancel jobid=${jobId} yes`);
    expect(said).toMatch(/marked to be canceled/);
    await waitFor('the hook to exit', () => !isRunning(hook.pid), 10_000, 100);
    const took = Date.now() - cancelledAt;
    console.info(`hook of job ${jobId} exited ${took} ms after the cancel`);
    expect(took).toBeLessThan(10_000);

    for (const d of hook.below) expect(isRunning(d.pid), `${d.pid} ${d.cmd}`).toBe(false);
    expect(await processes(hookOf(jobId, 'pre-backup'))).toEqual([]);
    // The file daemon then runs the job's after-script (post-backup, %e = Canceled): let it end.
    await waitFor('post-backup to end', async () => (await processes(hookOf(jobId))).length === 0, 60_000, 200);
    expect(existsSync(loaded.paths.lockPath), 'lock').toBe(false);
    expect(existsSync(`${loaded.paths.lockPath}.holder.json`), 'holder file').toBe(false);
    expect(secretDirsOf(hook.pid)).toEqual([]);
    expect(readdirSync(loaded.paths.dumpsDir).filter((n) => n.endsWith('.inprogress') || n.includes('.tmp-'))).toEqual([]);
    expect(existsSync(join(loaded.paths.stateDir, 'running.json')), 'progress file').toBe(false);
    // Pre-backup recorded the cancel; post-backup added Bacula's word for the job.
    const st = readStatus(loaded);
    expect(st).toMatchObject({ status: 'failed', job: { id: String(jobId) }, backup: { status: 'failed', detail: 'Canceled' } });
    expect(st.problems[0]).toBe(`cancelled by Bacula (job ${jobId})`);
    const log = readFileSync(loaded.paths.logFile, 'utf8');
    expect(log).toContain(`cancelled by Bacula (job ${jobId})`);
    expect((await jobOutcome(h.bconsole, jobId)).status).toBe('A');

    // The next job (a small database now) takes the lock at once and succeeds.
    configure(['small'], '0');
    const t = Date.now();
    const next = await h.runJob('ApisCP', 'Incremental');
    console.info(`next job ${next.jobId}: ${next.status} in ${Date.now() - t} ms`);
    expect(next.status, next.log).toBe('T');
    expect(readStatus(loaded)).toMatchObject({ status: 'ok', job: { id: String(next.jobId) } });
    expect(readFileSync(loaded.paths.logFile, 'utf8').slice(log.length)).not.toMatch(/waiting for the lock|died \(pid/);
  });

  test('a connection that only knocked at the file daemon\'s port, closed while the hook dumps, does not stop it', async () => {
    // A TCP monitor's probe: open before the job, so the hook sees it established, then closed
    // mid-dump (the daemon keeps it half-closed a while after a hello that never came).
    configure(['big'], '16M');
    const port = Number(/FDport = (\d+)/.exec(readFileSync(join(h.baseDir, 'etc/bacula-fd.conf'), 'utf8'))![1]);
    const knock = connect({ host: '127.0.0.1', port });
    await new Promise((resolve, reject) => knock.once('connect', resolve).once('error', reject));
    const jobId = await queueJob(h.bconsole, 'ApisCP', 'Full');
    await hookDumping(jobId);
    knock.destroy();
    const done = await jobOutcome(h.bconsole, jobId);
    expect(done.status, done.log).toBe('T');
    expect(readStatus(loaded)).toMatchObject({ status: 'ok', job: { id: String(jobId) } });
    expect(readFileSync(loaded.paths.logFile, 'utf8')).not.toContain(`cancelled by Bacula (job ${jobId})`);
  });
});
