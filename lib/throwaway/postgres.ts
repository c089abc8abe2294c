import { readFileSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { findPgTool, pgBinDirs } from './postgres-bin.js';
import { osUser } from '../os-user.js';
import type { ScratchServer } from '../model/kind.js';
import { isExecutable } from '../proc/which.js';
import { MissingDependencyError, tail } from '../errors.js';
import { cmd, type Command } from '../proc/command.js';
import { run } from '../proc/run.js';

export interface PostgresServer extends ScratchServer {
  readonly socketDir: string;
  readonly port: number;
  readonly dataDir: string;
  readonly baseDir: string;
  /** e.g. "15.14 (Debian 15.14-0+deb12u1)" */
  readonly version: string;
  readonly binDir: string;
  /** Run SQL (read from stdin, so passwords stay off argv) with `psql -X -At` as postgres. */
  sql(statement: string, database?: string): Promise<string>;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stop and remove every file. */
  destroy(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Directory to hold data, socket and log (created; default: a new directory under the OS temp dir). */
  baseDir?: string;
  /**
   * Rewrites the pg_ctl start command, e.g. to run the server inside a test host's namespaces
   * (the command carries uid/gid: the wrapper must switch to them itself, after entering).
   */
  wrapStart?: (command: Command) => Command;
  /** Server major version ("15"): its own binaries, as a restore or verify of a dump needs. Default: the newest installed. */
  major?: string;
  /**
   * The OS user the cluster runs as (default `postgres`). Another user (verify's) gets a private
   * base directory (0711: only the socket directory below is reachable), and its superuser role
   * `postgres` answers to that OS user and to OS `postgres` (peer, through a map); every other
   * role is refused (nothing but our own tools has business there).
   */
  osUser?: string;
}

// sockaddr_un.sun_path is 108 bytes; ".s.PGSQL.65535" plus a slash needs 15 of them.
const MAX_SOCKET_DIR = 107 - 15;

/**
 * A throwaway PostgreSQL cluster for tests, the demo and benchmarks. It listens only on a Unix
 * socket in its own directory, so several can run at once without touching a real server.
 * PostgreSQL refuses to run as root: initdb, pg_ctl and psql run as the OS user `postgres`.
 * Authentication mirrors a typical server: `postgres` by peer, every other role by password.
 */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const runAs = opts.osUser ?? 'postgres';
  const own = runAs !== 'postgres';
  const pg = osUser(runAs);
  if (!pg) throw new MissingDependencyError(`user ${runAs}`, 'postgresql', 'postgresql-server');
  const initdb = opts.major === undefined ? findPgTool('initdb') : pgBinDirs(opts.major).map((d) => join(d, 'initdb')).find(isExecutable);
  if (!initdb) throw new MissingDependencyError(`initdb${opts.major ? ` (PostgreSQL ${opts.major})` : ''}`, `postgresql${opts.major ? `-${opts.major}` : ''}`, `postgresql${opts.major ?? ''}-server`);
  const binDir = dirname(initdb);
  const tool = (name: string): string => {
    const p = findPgTool(name, { binDir });
    if (!p) throw new MissingDependencyError(join(binDir, name), 'postgresql', 'postgresql-server');
    return p;
  };
  const [pgCtl, psql, postgres] = [tool('pg_ctl'), tool('psql'), tool('postgres')];

  const ownBase = opts.baseDir === undefined;
  const baseDir = ownBase ? await mkdtemp(join(tmpdir(), 'apiscp-pg-')) : resolve(opts.baseDir!);
  await mkdir(baseDir, { recursive: true });
  const dataDir = join(baseDir, 'data');
  const socketDir = join(baseDir, 'sock');
  const logFile = join(baseDir, 'server.log');
  if (socketDir.length > MAX_SOCKET_DIR) throw new Error(`socket directory path too long for a Unix socket: ${socketDir}`);
  await assertTraversable(baseDir, pg.uid, pg.gid, runAs);
  await mkdir(socketDir, { recursive: true });
  for (const d of [baseDir, socketDir]) {
    await chown(d, pg.uid, pg.gid);
    await chmod(d, own && d === baseDir ? 0o711 : 0o755);
  }
  await writeFile(logFile, '', { mode: own ? 0o600 : 0o640 });
  await chown(logFile, pg.uid, pg.gid);

  const asPostgres = { uid: pg.uid, gid: pg.gid, cwd: baseDir, env: { HOME: pg.home, LC_ALL: 'C.UTF-8' } };
  const port = await freePort();
  const version = (await run(cmd(postgres, ['--version']))).stdout.replace(/^.*\(PostgreSQL\)\s*/, '').trim();
  let running = false;
  const start = async (): Promise<void> => {
    const command = cmd(pgCtl, ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start'], asPostgres);
    await run(opts.wrapStart ? opts.wrapStart(command) : command, { timeoutMs: 90_000 });
    running = true;
    watch(dataDir);
  };
  const stop = async (): Promise<void> => {
    // fast: disconnect clients (a dump in progress fails), as a real shutdown or crash would.
    await run(cmd(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], asPostgres), { timeoutMs: 90_000 });
    running = false;
    unwatch(dataDir);
  };
  const sql = async (statement: string, database = 'postgres'): Promise<string> => {
    const env = { ...asPostgres.env, PGHOST: socketDir, PGPORT: String(port), PGUSER: 'postgres', PGDATABASE: database };
    const args = ['-X', '-At', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '-f', '-'];
    const out = (await run(cmd(psql, args, { ...asPostgres, env }), { input: statement, timeoutMs: 300_000 })).stdout;
    return out.endsWith('\n') ? out.slice(0, -1) : out;
  };
  const destroy = async (): Promise<void> => {
    if (running) await stop().catch(() => undefined);
    await rm(ownBase ? baseDir : dataDir, { recursive: true, force: true });
    if (!ownBase) {
      await rm(socketDir, { recursive: true, force: true });
      await rm(logFile, { force: true });
    }
  };

  try {
    await run(cmd(initdb, ['-D', dataDir, '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync', '--no-instructions'], asPostgres), {
      timeoutMs: 120_000,
    });
    // Speed over durability: this cluster is thrown away; nothing but the socket is reachable.
    await appendFile(
      join(dataDir, 'postgresql.conf'),
      [
        '',
        "listen_addresses = ''",
        `unix_socket_directories = '${socketDir.replace(/'/g, "''")}'`,
        `port = ${port}`,
        'fsync = off',
        'synchronous_commit = off',
        'full_page_writes = off',
        'max_connections = 30',
        'shared_buffers = 32MB',
        "password_encryption = 'scram-sha-256'",
        '',
      ].join('\n'),
    );
    if (own) {
      await writeFile(join(dataDir, 'pg_ident.conf'), [`own ${runAs} postgres`, 'own postgres postgres', ''].join('\n'));
      await writeFile(join(dataDir, 'pg_hba.conf'), ['local all postgres peer map=own', 'local all all reject', ''].join('\n'));
    } else {
      await writeFile(join(dataDir, 'pg_hba.conf'), ['local all postgres peer', 'local all all scram-sha-256', ''].join('\n'));
    }
    await start();
  } catch (err) {
    // The server log says why it would not start (shared memory, permissions, a bad setting).
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await destroy();
    if (log.trim()) throw new Error(`PostgreSQL sandbox in ${baseDir} failed: ${(err as Error).message}\n${tail(log)}`, { cause: err });
    throw err;
  }
  // Where a restore session (or the sandbox's pg_restore) reaches it: the socket directory, as postgres.
  const target = { host: socketDir, port, user: 'postgres', bin_dir: binDir };
  return { socketDir, port, target, dataDir, baseDir, version, binDir, sql, stop, start, destroy };
}

/**
 * pg_ctl detaches the server, so a process that ends without destroy() (a hung test, a vitest
 * worker stopped with SIGTERM, Ctrl-C in the demo) would leave it running. While any sandbox is
 * up we watch for exit and SIGTERM/SIGINT, stop what is left the quickest way (SIGQUIT: immediate
 * shutdown), then let the signal take its normal course.
 */
const live = new Set<string>();
const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

function killLive(): void {
  for (const dataDir of live) {
    try {
      const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killLive();
  unwatch();
  // Nobody else handles it: re-raise so the process ends as it would have without us.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function watch(dataDir: string): void {
  if (live.size === 0) {
    process.on('exit', killLive);
    for (const s of SIGNALS) process.on(s, onSignal);
  }
  live.add(dataDir);
}

function unwatch(dataDir?: string): void {
  if (dataDir !== undefined) live.delete(dataDir);
  if (live.size > 0) return;
  process.removeListener('exit', killLive);
  for (const s of SIGNALS) process.removeListener(s, onSignal);
}

/** The port only names the socket file, but a number no TCP listener uses keeps logs unambiguous. */
async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** The server's OS user must reach the data dir through every parent; say which one blocks it. */
async function assertTraversable(dir: string, uid: number, gid: number, name: string): Promise<void> {
  for (let d = dirname(dir); ; d = dirname(d)) {
    const s = await stat(d);
    const bit = s.uid === uid ? 0o100 : s.gid === gid ? 0o010 : 0o001;
    if ((s.mode & bit) === 0) throw new Error(`${d} is not traversable by the ${name} user (mode ${(s.mode & 0o777).toString(8)}): choose another baseDir`);
    if (d === '/') return;
  }
}
