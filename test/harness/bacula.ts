import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderBaculaJob, type BaculaJobOptions } from '../../lib/engine/bacula.js';
import { cmd, type Command } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { track } from '../../lib/proc/process-group.js';
import { whichSystem } from '../../lib/proc/which.js';
import { bconsoleConfig, fdConfig, prepareCatalog, sdConfig, stockDirectorConfig } from './bacula-configs.js';
import { exitClasses } from '../../lib/proc/exit-status.js';

export { bconsoleConfig, fdConfig, prepareCatalog, sdConfig, stockDirectorConfig, type StockParams } from './bacula-configs.js';

/**
 * Real Bacula 9.6 daemons (director + storage + file daemon, sqlite catalog) on 127.0.0.1 with
 * free ports, all state under one temp dir: what the Bacula tests (and later multi-host tests)
 * run against. Nothing is mocked; a missing binary throws, so tests fail rather than skip.
 */

export interface StartBaculaOptions {
  /** Where configs, catalog, volumes and logs go (default: a fresh temp dir). */
  baseDir?: string;
  /** Appended to the stock-like director config: our generated fragment, extra JobDefs… */
  extraDirectorConfig?: string;
  /** When set, a Job `Harness` (DefaultJob, FileSet "Full Set") runs this Command on the client first. */
  clientRunBefore?: string;
  /** Name of the file daemon / Client resource (default apiscp-fd, the bacula.client default). */
  clientName?: string;
  /** Keep a temp baseDir after stop() for a post-mortem (daemon output is in baseDir/*.out). */
  keep?: boolean;
  /**
   * Build the director's configuration yourself (e.g. the ApisCP add-in's include tree) from the
   * harness's ports and passwords; returns the file bacula-dir loads. Replaces the stock config.
   */
  director?: (p: DirectorParams) => string | Promise<string>;
  /** The director's Name (default harness-dir); the sd and fd trust this name. */
  directorName?: string;
  /** Storage daemon devices, all Media Type `mediaType` (default: one FileStorage, File1). */
  sdDevices?: { names: string[]; mediaType: string };
}

export interface DirectorParams {
  readonly directorName: string;
  readonly dirPort: number;
  readonly sdPort: number;
  readonly fdPort: number;
  readonly passwords: { readonly console: string; readonly fd: string; readonly sd: string };
  /** The director's WorkingDirectory (the sqlite catalog is prepared here). */
  readonly workDir: string;
  readonly confDir: string;
  readonly logFile: string;
}

export interface JobOutcome {
  jobId: number;
  /** JobStatus letter from the catalog: T ok, W warnings, f fatal, E error, A canceled. */
  status: string;
  /** The job's messages (`list joblog`). */
  log: string;
}

export interface BaculaHarness {
  readonly baseDir: string;
  readonly directorConfigFile: string;
  readonly bconsoleConfigFile: string;
  readonly clientName: string;
  readonly directorName: string;
  /** Backed up by FileSet "Full Set" (DefaultJob's, and the Harness job's). */
  readonly dataDir: string;
  bconsole(commands: string): Promise<string>;
  runJob(job: string, level?: string): Promise<JobOutcome>;
  restore(opts: { client?: string; fileset: string; where: string; jobIds?: number[] }): Promise<JobOutcome>;
  testConfig(text: string): Promise<{ ok: boolean; output: string }>;
  stop(): Promise<void>;
}

export const BACULA_BINARIES = ['bacula-dir', 'bacula-sd', 'bacula-fd', 'bconsole'] as const;

export function binary(name: string): string {
  const found = whichSystem(name);
  if (!found) throw new Error(`${name} not found: apt-get install bacula-director-sqlite3 bacula-sd bacula-fd bacula-console`);
  return found;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** True once something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

export const password = (): string => randomBytes(18).toString('base64url');

/** A Job with arbitrary Before/After client Commands (the stand-in script now, the real hook later). */
export function buildJob(opts: Partial<BaculaJobOptions> & { job: string }): string {
  return renderBaculaJob({ jobdefs: 'DefaultJob', client: 'apiscp-fd', fileset: 'Full Set', ...opts });
}

/** `bacula-dir -t`: exit 0 for a valid config; the output says what is wrong otherwise. */
export async function testDirectorConfig(file: string): Promise<{ ok: boolean; output: string }> {
  const r = await run(cmd(binary('bacula-dir'), ['-t', '-c', file]), { exitClass: exitClasses({ ok: [1, 2, 3] }), timeoutMs: 60_000 });
  return { ok: r.exitCode === 0, output: (r.stdout + r.stderr).trim() };
}

function parseJobId(output: string): number {
  const m = /JobId=(\d+)/.exec(output);
  if (!m) throw new Error(`bconsole did not queue a job:\n${output}`);
  return Number(m[1]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Daemons started by daemonSet().start, stopped together; a crashed test process kills them on exit. */
export interface DaemonSet {
  /** Start `command` (with `-f`: foreground, so it is our child); its output goes to outDir/<name>.out. */
  start(command: Command, name: string): ChildProcess;
  /** The first daemon that exited, if any. */
  dead(): ChildProcess | undefined;
  /** SIGKILL every daemon's process group now. */
  killAll(): void;
  /** SIGTERM, up to 5 s, then SIGKILL. */
  stop(): Promise<void>;
}

export function daemonSet(outDir: string): DaemonSet {
  const children: ChildProcess[] = [];
  const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
  const killAll = (): void => {
    for (const c of children) if (running(c) && c.pid) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  // Safety net for a crashed test process: never leave daemons behind holding ports.
  process.once('exit', killAll);
  return {
    start(command, name) {
      const env = command.env ? { ...process.env, ...command.env } : undefined;
      const child = spawn(command.file, [...command.args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
      const log: string[] = [];
      child.stdout?.on('data', (b: Buffer) => log.push(b.toString()));
      child.stderr?.on('data', (b: Buffer) => log.push(b.toString()));
      child.once('exit', () => writeFileSync(join(outDir, `${name}.out`), log.join('')));
      track(child);
      children.push(child);
      return child;
    },
    dead: () => children.find((c) => !running(c)),
    killAll,
    async stop() {
      for (const c of children) if (running(c) && c.pid) try { process.kill(-c.pid, 'SIGTERM'); } catch { /* gone */ }
      const until = Date.now() + 5_000;
      while (children.some(running) && Date.now() < until) await sleep(50);
      killAll();
      process.removeListener('exit', killAll);
    },
  };
}

export type Bconsole = (commands: string) => Promise<string>;

/** bconsole with our config; `wrap` runs it elsewhere (inside the director's network namespace). */
export function bconsoleRunner(configFile: string, wrap: (c: Command) => Command = (c) => c): Bconsole {
  const conBin = binary('bconsole');
  return async (commands) => {
    const r = await run(wrap(cmd(conBin, ['-n', '-c', configFile])), { input: commands.endsWith('\n') ? commands : commands + '\n', timeoutMs: 120_000 });
    return r.stdout + r.stderr;
  };
}

/** Wait for a job and read its outcome: bconsole exits 0 whatever the job did, the catalog's JobStatus is the truth. */
export async function jobOutcome(bconsole: Bconsole, jobId: number): Promise<JobOutcome> {
  await bconsole(`wait jobid=${jobId}`);
  const listed = await bconsole(`llist jobid=${jobId}`);
  const m = /jobstatus:\s*(\S)/i.exec(listed);
  if (!m) throw new Error(`no JobStatus for job ${jobId}:\n${listed}`);
  const log = await bconsole(`list joblog jobid=${jobId}`);
  return { jobId, status: m[1]!, log };
}

/** Queue a job and return its id (bconsole answers "Job queued. JobId=N"). */
/**
 * Turn off the director's own scheduling of every job: the stock config's WeeklyCycle runs jobs
 * at 23:05 every day (the add-in's at 05:45 and 23:10), and a test running then found two Full
 * jobs it had not started in the catalog. `run job=…` still runs a disabled job.
 */
export async function holdSchedules(bconsole: Bconsole): Promise<void> {
  // bconsole echoes the command; the job names follow it, one per line.
  const lines = (await bconsole('.jobs')).split('\n').map((l) => l.trim());
  const jobs = lines.slice(lines.indexOf('.jobs') + 1).filter(Boolean);
  if (!jobs.length) throw new Error('holdSchedules: the director listed no jobs');
  const out = await bconsole(jobs.map((j) => `disable job=${JSON.stringify(j)}`).join('\n'));
  const disabled = (out.match(/disabled\.?$/gim) ?? []).length;
  if (disabled < jobs.length) throw new Error(`holdSchedules: ${disabled} of ${jobs.length} jobs disabled:\n${out}`);
}

export async function queueJob(bconsole: Bconsole, job: string, level = 'Full'): Promise<number> {
  return parseJobId(await bconsole(`run job=${JSON.stringify(job)} level=${level} yes`));
}

export async function startBacula(opts: StartBaculaOptions = {}): Promise<BaculaHarness> {
  const [dirBin, sdBin, fdBin] = BACULA_BINARIES.map(binary) as [string, string, string, string];
  const baseDir = opts.baseDir ?? mkdtempSync(join(tmpdir(), 'bacula-harness-'));
  const dirs = { dir: join(baseDir, 'dir'), sd: join(baseDir, 'sd'), fd: join(baseDir, 'fd'), volumes: join(baseDir, 'volumes'), data: join(baseDir, 'data'), conf: join(baseDir, 'etc') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true, mode: 0o700 });
  const [dirPort, sdPort, fdPort] = [await freePort(), await freePort(), await freePort()];
  const clientName = opts.clientName ?? 'apiscp-fd';
  const directorName = opts.directorName ?? 'harness-dir';
  const pw = { console: password(), fd: password(), sd: password() };

  writeFileSync(join(dirs.dir, 'query.sql'), '');
  await prepareCatalog(dirs.dir);
  const stock = stockDirectorConfig({
    directorName, dirPort, consolePassword: pw.console, workDir: dirs.dir, clientName, fdPort, fdPassword: pw.fd, sdPort, sdPassword: pw.sd,
    logFile: join(baseDir, 'bacula.log'), dataDir: dirs.data,
  });
  const harnessJob = opts.clientRunBefore !== undefined ? '\n' + buildJob({ job: 'Harness', client: clientName, before: opts.clientRunBefore }) : '';
  const files = {
    dir: join(dirs.conf, 'bacula-dir.conf'), sd: join(dirs.conf, 'bacula-sd.conf'), fd: join(dirs.conf, 'bacula-fd.conf'), con: join(dirs.conf, 'bconsole.conf'),
  };
  if (opts.director) {
    files.dir = await opts.director({ directorName, dirPort, sdPort, fdPort, passwords: pw, workDir: dirs.dir, confDir: dirs.conf, logFile: join(baseDir, 'bacula.log') });
  } else {
    writeFileSync(files.dir, stock + harnessJob + (opts.extraDirectorConfig ? '\n' + opts.extraDirectorConfig : ''), { mode: 0o600 });
  }
  writeFileSync(files.sd, sdConfig(directorName, sdPort, pw.sd, dirs.sd, dirs.volumes, opts.sdDevices), { mode: 0o600 });
  writeFileSync(files.fd, fdConfig(directorName, clientName, fdPort, pw.fd, dirs.fd), { mode: 0o600 });
  writeFileSync(files.con, bconsoleConfig(directorName, dirPort, pw.console), { mode: 0o600 });

  // Catch a bad fragment with a readable message instead of a director that dies on start.
  const checked = await testDirectorConfig(files.dir);
  if (!checked.ok) throw new Error(`director config rejected by bacula-dir -t:\n${checked.output}`);

  const daemons = daemonSet(baseDir);
  const { killAll } = daemons;
  daemons.start(cmd(sdBin, ['-f', '-c', files.sd]), 'sd');
  daemons.start(cmd(fdBin, ['-f', '-c', files.fd]), 'fd');
  daemons.start(cmd(dirBin, ['-f', '-c', files.dir]), 'dir');
  const bconsole = bconsoleRunner(files.con);

  const deadline = Date.now() + 30_000;
  for (;;) {
    const dead = daemons.dead();
    if (dead) {
      killAll();
      throw new Error(`a Bacula daemon exited on start (${dead.spawnargs.join(' ')}); see ${baseDir}/*.out`);
    }
    // bconsole retries a refused connection only every 5 s: knock on the ports ourselves first.
    const up = (await Promise.all([dirPort, sdPort, fdPort].map(listening))).every(Boolean);
    const out = up ? await bconsole('status dir').catch((e: Error) => e.message) : 'not listening yet';
    if (/Daemon started/.test(out)) break;
    if (Date.now() > deadline) {
      killAll();
      throw new Error(`bconsole got no answer from the director in 30s:\n${out}`);
    }
    await sleep(50);
  }

  await holdSchedules(bconsole);
  const outcome = (jobId: number): Promise<JobOutcome> => jobOutcome(bconsole, jobId);

  return {
    baseDir,
    directorConfigFile: files.dir,
    bconsoleConfigFile: files.con,
    clientName,
    directorName,
    dataDir: dirs.data,
    bconsole,
    async runJob(job, level = 'Full') {
      return outcome(await queueJob(bconsole, job, level));
    },
    async restore({ client = clientName, fileset, where, jobIds }) {
      const which = jobIds?.length ? `jobid=${jobIds.join(',')}` : `fileset=${JSON.stringify(fileset)} select current`;
      return outcome(parseJobId(await bconsole(`restore client=${client} ${which} where=${JSON.stringify(where)} all done yes`)));
    },
    async testConfig(text) {
      const file = join(dirs.conf, `test-${randomBytes(4).toString('hex')}.conf`);
      writeFileSync(file, text, { mode: 0o600 });
      return testDirectorConfig(file);
    },
    async stop() {
      await daemons.stop();
      if (!opts.baseDir && !opts.keep) rmSync(baseDir, { recursive: true, force: true });
    },
  };
}
