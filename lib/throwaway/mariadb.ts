import { readdirSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupError, CommandError, MissingDependencyError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { startChild, type StartedChild } from '../proc/child.js';
import type { Ended } from '../proc/lifecycle.js';
import { run } from '../proc/run.js';
import { cmd } from '../proc/command.js';
import { whichSystem } from '../proc/which.js';
import { osUser, type OsUser } from '../os-user.js';
import type { ScratchServer, ServerTarget } from '../model/kind.js';

/**
 * A throwaway MariaDB server for tests, the demo and benchmarks: own data directory, own socket,
 * no TCP, no option files read. Several can run at once (each gets a unique mkdtemp directory).
 */
export interface MariadbServer extends ScratchServer {
  readonly socket: string;
  /** Where a restore session reaches it: the socket, as root. */
  readonly target: ServerTarget;
  readonly dataDir: string;
  readonly baseDir: string;
  readonly version: string;
  /** mariadbd's pid while it runs (tests kill it mid-dump). */
  readonly pid: number | undefined;
  /** Run SQL (fed on stdin) with the mariadb client as root over the socket; batch, no column names. */
  sql(statement: string, database?: string): Promise<string>;
  stop(): Promise<void>;
  /** Start again after stop()/kill(), same data. */
  start(): Promise<void>;
  /** SIGKILL the server (a crash, for fault tests) and wait until it is gone. */
  kill(): Promise<void>;
  /** Stop and remove baseDir. */
  destroy(): Promise<void>;
}

export interface StartMariadbOptions {
  /** Parent for the server's directory (default os.tmpdir()). Keep it short: sockets are limited to 107 bytes. */
  baseDir?: string;
  /** Extra mariadbd options, e.g. ['--innodb-buffer-pool-size=256M'] for benchmarks. */
  serverArgs?: readonly string[];
  /**
   * Argv put before mariadbd, e.g. ['ip', 'netns', 'exec', NS] to run it inside a test host's
   * network namespace. It must exec mariadbd (keep the pid) for stop() and kill() to reach it.
   */
  launcher?: readonly string[];
  /**
   * Run mariadbd as this unprivileged OS user (created on demand: a system user, no login shell,
   * no home), in a 0700 directory of its own, with file import/export confined to that directory
   * and no LOCAL INFILE: verify loads customers' dumps into it. Needs root; root still connects
   * (socket authentication of the OS user root).
   */
  runAs?: string;
}

/** The OS user a confined server runs as, created when missing. */
export async function ensureServiceUser(name: string): Promise<OsUser> {
  const have = osUser(name);
  if (have) return have;
  const useradd = whichSystem('useradd');
  if (!useradd) throw new MissingDependencyError('useradd', 'passwd', 'shadow-utils');
  const nologin = ['/usr/sbin/nologin', '/sbin/nologin'].find((f) => isFile(f)) ?? '/bin/false';
  await run(cmd(useradd, ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', nologin, '--comment', 'apiscp-backup throwaway servers', '--', name]), { timeoutMs: 60_000 }).catch((err: unknown) => {
    // Another run created it meanwhile: that is fine.
    if (!osUser(name)) throw err;
  });
  const made = osUser(name);
  if (!made) throw new BackupError(`cannot create the OS user ${name}`, ExitCode.INTERNAL);
  return made;
}

/** The server's compiled-in plugin directory (mariadbd --verbose --help), undefined when it does not say. */
async function pluginDir(mariadbd: string): Promise<string | undefined> {
  const help = await run(cmd(mariadbd, ['--no-defaults', '--verbose', '--help']), { timeoutMs: 60_000 }).catch(() => undefined);
  const m = /^plugin-dir\s+(\S+)/m.exec(help?.stdout ?? '');
  return m?.[1];
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

const STARTUP_MS = 30_000;
const STOP_MS = 30_000;
const SOCKET_PATH_MAX = 107;

export async function startMariadb(opts: StartMariadbOptions = {}): Promise<MariadbServer> {
  const mariadbd = whichSystem('mariadbd') ?? whichSystem('mysqld');
  if (!mariadbd) throw new MissingDependencyError('mariadbd', 'mariadb-server', 'mariadb-server');
  const installDb = whichSystem('mariadb-install-db') ?? whichSystem('mysql_install_db');
  if (!installDb) throw new MissingDependencyError('mariadb-install-db', 'mariadb-server', 'mariadb-server');
  const client = whichSystem('mariadb') ?? whichSystem('mysql');
  if (!client) throw new MissingDependencyError('mariadb', 'mariadb-client', 'mariadb');

  const baseDir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'asb-my-'));
  const dataDir = join(baseDir, 'data');
  const socket = join(baseDir, 's.sock');
  if (Buffer.byteLength(socket) > SOCKET_PATH_MAX) {
    await rm(baseDir, { recursive: true, force: true });
    throw new BackupError(`socket path ${socket} is longer than ${SOCKET_PATH_MAX} bytes: use a shorter baseDir`, ExitCode.USAGE);
  }
  const errorLog = join(baseDir, 'error.log');
  const asRoot = process.getuid?.() === 0;
  // mariadbd refuses to run as root unless told to; a non-root user runs it as itself. Socket
  // authentication only maps root@localhost when we are root, so non-root installs get 'normal'.
  let userArgs = asRoot ? ['--user=root'] : [];
  const confined: string[] = [];
  if (opts.runAs !== undefined) {
    if (!asRoot) throw new BackupError(`a MariaDB server confined to the OS user ${opts.runAs} needs root`, ExitCode.USAGE);
    const user = await ensureServiceUser(opts.runAs).catch(async (err: unknown) => {
      await rm(baseDir, { recursive: true, force: true });
      throw err;
    });
    const files = join(baseDir, 'files');
    await mkdir(files, { mode: 0o700 });
    for (const dir of [baseDir, files]) await chown(dir, user.uid, user.gid);
    await chmod(baseDir, 0o700);
    userArgs = [`--user=${opts.runAs}`];
    // Its own plugin directory holding only the authentication plugins accounts may need: no
    // engine that reaches out (FEDERATED, CONNECT) or plugin that writes files can be loaded.
    const plugins = join(baseDir, 'plugins');
    await mkdir(plugins, { mode: 0o755 });
    const systemPlugins = await pluginDir(mariadbd);
    for (const f of systemPlugins ? readdirSync(systemPlugins).filter((n) => /^auth_[a-z0-9_]+\.so$/.test(n)) : []) await symlink(join(systemPlugins!, f), join(plugins, f));
    confined.push(`--secure-file-priv=${files}`, '--local-infile=0', `--plugin-dir=${plugins}`);
  }
  // Small InnoDB files keep install and startup around half a second; the 1G packet lets 20 MB
  // rows (hex-encoded to 40 MB in a dump) travel both ways.
  // Its own tmpdir: with the shared /tmp, bootstrap failed now and then ("Could not remove
  // temporary table '/tmp/#sql-temptable-…'") while other test suites cleaned up /tmp.
  const tmp = join(baseDir, 'tmp');
  await mkdir(tmp, { mode: 0o700 });
  if (opts.runAs !== undefined) {
    const user = osUser(opts.runAs)!;
    await chown(tmp, user.uid, user.gid);
  }
  const tuning = ['--innodb-buffer-pool-size=64M', '--innodb-log-file-size=16M', '--max-allowed-packet=1G', '--skip-name-resolve', `--tmpdir=${tmp}`];

  try {
    await run(
      cmd(installDb, [
        '--no-defaults',
        ...userArgs,
        `--datadir=${dataDir}`,
        `--auth-root-authentication-method=${asRoot ? 'socket' : 'normal'}`,
        '--skip-test-db',
        ...tuning,
      ]),
      { timeoutMs: 120_000 },
    );
  } catch (err) {
    await rm(baseDir, { recursive: true, force: true });
    // The last line is only "Aborting": the reason is a few lines up.
    const detail = err instanceof CommandError ? err.stderrTail.split('\n').slice(-10).join('\n') : String(err);
    const hint = opts.runAs !== undefined && /Permission denied|Errcode: 13/.test(detail) ? `\n(the OS user ${opts.runAs} must be able to reach ${baseDir}: every directory above it needs o+x)` : '';
    throw new BackupError(`mariadb-install-db failed:\n${detail}${hint}`, ExitCode.INTERNAL, { baseDir }, { cause: err });
  }

  const serverArgs = [
    '--no-defaults',
    ...userArgs,
    `--datadir=${dataDir}`,
    `--socket=${socket}`,
    '--skip-networking',
    `--pid-file=${join(baseDir, 'mariadbd.pid')}`,
    `--log-error=${errorLog}`,
    ...tuning,
    ...confined,
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_unicode_ci',
    ...(opts.serverArgs ?? []),
  ];

  let child: StartedChild | undefined;
  let exited: Promise<void> = Promise.resolve();
  let version = '';

  const sql = async (statement: string, database?: string): Promise<string> => {
    const args = ['--no-defaults', `--socket=${socket}`, '--user=root', '--default-character-set=utf8mb4', '--max-allowed-packet=1G', '--batch', '--skip-column-names'];
    // --database=NAME is one argv element, so a name starting with '-' is never an option.
    if (database !== undefined) args.push(`--database=${database}`);
    const result = await run(cmd(client, args), { input: statement, timeoutMs: 300_000 });
    return result.stdout;
  };

  const errorLogTail = async (): Promise<string> => {
    const text = await readFile(errorLog, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-8).join('\n');
  };

  const start = async (): Promise<void> => {
    if (child?.running) return;
    // A daemon outlives any single call: started as one (its own process group, unref'd so a
    // test runner can exit); stop()/kill() signal it and wait for its end.
    const [file, ...args] = [...(opts.launcher ?? []), mariadbd, ...serverArgs];
    const proc = startChild(cmd(file!, args), { daemon: true });
    child = proc;
    let gone: Ended | undefined;
    exited = proc.ended.then((end) => void (gone = end));
    const deadline = Date.now() + STARTUP_MS;
    for (;;) {
      if (gone) {
        throw new BackupError(`mariadbd exited during startup (code ${gone.exitCode ?? gone.signal ?? gone.startError}): ${await errorLogTail()}`, ExitCode.INTERNAL, {
          baseDir,
        });
      }
      try {
        version = (await sql('SELECT VERSION()')).trim();
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          await kill();
          throw new BackupError(`mariadbd did not answer within ${STARTUP_MS / 1000}s: ${await errorLogTail()}`, ExitCode.INTERNAL, { baseDir }, { cause: err });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  const signalAndWait = async (signal: NodeJS.Signals, waitMs: number): Promise<boolean> => {
    if (!child?.send(signal)) return true; // not running, or already gone
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), waitMs)));
    const ok = await Promise.race([exited.then(() => true), timedOut]);
    clearTimeout(timer);
    return ok;
  };

  const kill = async (): Promise<void> => {
    await signalAndWait('SIGKILL', STOP_MS);
  };

  const stop = async (): Promise<void> => {
    // SIGTERM is mariadbd's clean shutdown; SIGKILL only if it hangs.
    if (!(await signalAndWait('SIGTERM', STOP_MS))) await kill();
  };

  const destroy = async (): Promise<void> => {
    await stop();
    await rm(baseDir, { recursive: true, force: true });
  };

  try {
    await start();
  } catch (err) {
    await rm(baseDir, { recursive: true, force: true });
    throw err;
  }

  return {
    socket,
    target: { socket, user: 'root' },
    dataDir,
    baseDir,
    get version() {
      return version;
    },
    get pid() {
      return child?.running ? child.pid : undefined;
    },
    sql,
    stop,
    start,
    kill,
    destroy,
  };
}
