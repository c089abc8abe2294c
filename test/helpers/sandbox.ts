/**
 * Shared test sandbox: real MariaDB + PostgreSQL servers, a temporary `paths.root` with a
 * config.yaml pointing at their sockets, the ApisCP stand-in (cpcmd) with sites owning some of
 * the databases, and a runner for the BUILT CLI as a subprocess (how cron and Bacula run it).
 *
 *   const servers = await startServers();               // one pair, reused by many sandboxes
 *   const sb = await createSandbox(servers, { sites, config: { dumps: { keep: 2 } } });
 *   const r = await sb.cli(['dump']);                   // { exitCode, stdout, stderr }
 *
 * The CLI must have been built (test/global-setup.ts runs `npm run build` once per vitest run).
 * Every sandbox has its own root, lock, state, log and TMPDIR, so sandboxes never see each other.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { stringify } from 'yaml';
import type { Manifest } from '../../lib/model/manifest.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';

export const REPO = resolve(import.meta.dirname, '../..');
/** The built CLI entry (npm run build). */
export const CLI = join(REPO, 'dist/scripts/apiscp-backup.js');
/** The ApisCP stand-in; it is the only fake in the test suite. */
export const FAKE_CPCMD = join(REPO, 'sandbox/fake-apiscp/cpcmd');
export const EXPORT_SCOPE = 'backups.automatic-database-exports';

/** One site of the stand-in panel (fake-apiscp/README.md, "State file"). */
export interface SiteSpec {
  domain?: string;
  active?: boolean;
  mysql?: string[];
  pgsql?: string[];
  prefix?: string;
  admin?: string;
  broken?: boolean;
  /** Databases whose owner-scheduled export is due (backup_dbs without --force); default all. */
  due?: string[];
}

export interface PanelState {
  scopes?: Record<string, unknown>;
  sites?: Record<string, SiteSpec>;
  quirks?: Record<string, unknown>;
}

export interface SandboxOptions {
  /** Sites of the stand-in panel (default: none). */
  sites?: Record<string, SiteSpec>;
  scopes?: Record<string, unknown>;
  quirks?: Record<string, unknown>;
  /** Deep-merged over the base configuration (a `null` value removes a key). */
  config?: ConfigTree;
  /** Parent of the root directory (default os.tmpdir()). */
  parent?: string;
}

export type ConfigTree = { [key: string]: unknown };

export interface CliResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the CLI died by a signal instead of exiting. */
  readonly signal?: string;
}

export interface CliOptions {
  /** Extra environment (an `undefined` value removes a variable). */
  env?: Record<string, string | undefined>;
  /** Pass `--config <configFile>` first (default true). */
  withConfig?: boolean;
  timeoutMs?: number;
}

export interface Sandbox {
  readonly servers: Servers;
  readonly root: string;
  readonly configFile: string;
  readonly dumpsDir: string;
  readonly stateDir: string;
  readonly statusFile: string;
  readonly logFile: string;
  readonly lockPath: string;
  /** TMPDIR of the CLI: temporary option files must appear and vanish here. */
  readonly tmpDir: string;
  readonly panelStateFile: string;
  readonly panelLog: string;
  /** Environment the CLI runs with (CPCMD, FAKE_APISCP_*, TMPDIR; no APISCP_BACKUP_CONFIG). */
  readonly env: Record<string, string | undefined>;
  /** The configuration written to configFile. */
  config: ConfigTree;
  /** Rewrite config.yaml: base configuration deep-merged with `overrides`. */
  writeConfig(overrides?: ConfigTree): void;
  readPanelState(): PanelState;
  writePanelState(state: PanelState): void;
  /** Run the built CLI to completion. Never throws on a non-zero exit. */
  cli(args: readonly string[], options?: CliOptions): Promise<CliResult>;
  /** Start the built CLI and return the running subprocess (for signals mid-run). */
  spawnCli(args: readonly string[], options?: CliOptions): ResultPromise;
  /** Run directory names (finished runs and `.inprogress` ones), sorted. */
  runDirs(): string[];
  /** Where `latest` points, or undefined. */
  latest(): string | undefined;
  manifest(runId: string): Manifest;
  destroy(): Promise<void>;
}

export async function createSandbox(servers: Servers, options: SandboxOptions = {}): Promise<Sandbox> {
  const root = await mkdtemp(join(options.parent ?? tmpdir(), 'asb-cli-'));
  const configFile = join(root, 'etc/apiscp-backup/config.yaml');
  const tmpDir = join(root, 'tmp');
  const panelStateFile = join(root, 'fake-apiscp.json');
  const panelLog = join(root, 'fake-apiscp.log');
  mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
  mkdirSync(join(root, 'home/virtual'), { recursive: true });

  const base = (): ConfigTree => ({
    engine: 'none',
    paths: { root },
    // A server that does not answer is retried after dumps.retry_wait (30s by default): not in tests.
    dumps: { keep: 3, concurrency: 2, retry_wait: '200ms' },
    databases: {
      mysql: {
        enabled: true,
        socket: servers.mariadb.socket,
        // Never the host's /root/.my.cnf: the sandbox server authenticates root by socket.
        defaults_file: join(root, 'no-such.my.cnf'),
      },
      postgresql: { enabled: true, host: servers.postgres.socketDir, port: servers.postgres.port },
      // The site owners' scheduled exports (panel.owner_exports) run the stand-in's backup_dbs.php.
      apnscp: { php: join(REPO, 'sandbox/fake-apiscp/apnscp_php'), script: join(REPO, 'sandbox/fake-apiscp/backup_dbs.php') },
    },
    panel: { enabled: 'auto', timeout: '30s' },
    lock: { wait: '2s' },
  });

  const sandbox: Sandbox = {
    servers,
    root,
    configFile,
    dumpsDir: join(root, 'var/backup/apiscp-backup'),
    stateDir: join(root, 'var/lib/apiscp-backup'),
    statusFile: join(root, 'var/lib/apiscp-backup/status.json'),
    logFile: join(root, 'var/log/apiscp-backup.log'),
    lockPath: join(root, 'run/apiscp-backup.lock'),
    tmpDir,
    panelStateFile,
    panelLog,
    env: {
      CPCMD: FAKE_CPCMD,
      FAKE_APISCP_STATE: panelStateFile,
      FAKE_APISCP_LOG: panelLog,
      FAKE_APISCP_HOME: join(root, 'home/virtual'),
      TMPDIR: tmpDir,
      APISCP_BACKUP_CONFIG: undefined,
    },
    config: {},
    writeConfig(overrides: ConfigTree = {}) {
      sandbox.config = deepMerge(base(), overrides);
      mkdirSync(join(root, 'etc/apiscp-backup'), { recursive: true });
      writeFileSync(configFile, stringify(sandbox.config), { mode: 0o600 });
    },
    readPanelState: () => JSON.parse(readFileSync(panelStateFile, 'utf8')) as PanelState,
    writePanelState: (state) => writeFileSync(panelStateFile, JSON.stringify(state, null, 2)),
    spawnCli(args, opts = {}) {
      const argv = [CLI, ...(opts.withConfig === false ? [] : ['--config', configFile]), ...args];
      return execa(process.execPath, argv, {
        env: { ...sandbox.env, ...opts.env },
        extendEnv: true,
        stdin: 'ignore',
        reject: false,
        timeout: opts.timeoutMs ?? 170_000,
        cleanup: true,
      });
    },
    async cli(args, opts = {}) {
      const r = await sandbox.spawnCli(args, opts);
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), signal: r.signal ?? undefined };
    },
    runDirs() {
      if (!existsSync(sandbox.dumpsDir)) return [];
      return readdirSync(sandbox.dumpsDir)
        .filter((n) => /^\d{8}T\d{6}Z/.test(n))
        .sort();
    },
    latest() {
      try {
        return readlinkSync(join(sandbox.dumpsDir, 'latest'));
      } catch {
        return undefined;
      }
    },
    manifest: (runId) => JSON.parse(readFileSync(join(sandbox.dumpsDir, runId, 'manifest.json'), 'utf8')) as Manifest,
    destroy: () => rm(root, { recursive: true, force: true }),
  };
  sandbox.writeConfig(options.config);
  sandbox.writePanelState({
    scopes: options.scopes ?? { [EXPORT_SCOPE]: true },
    sites: Object.fromEntries(
      Object.entries(options.sites ?? {}).map(([id, s]) => [
        id,
        { domain: `${id}.test`, active: true, mysql: [], pgsql: [], prefix: `${id}_`, admin: `admin${id.replace(/\D/g, '')}`, ...s },
      ]),
    ),
    quirks: options.quirks ?? {},
  });
  return sandbox;
}

/** Objects merge key by key; arrays and scalars replace; `null` deletes the key. */
export function deepMerge(base: ConfigTree, over: ConfigTree): ConfigTree {
  const out: ConfigTree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isTree(v) && isTree(out[k])) out[k] = deepMerge(out[k] as ConfigTree, v);
    else out[k] = v;
  }
  return out;
}

function isTree(v: unknown): v is ConfigTree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Every file below `dir` (relative paths), following no symlinks. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, encoding: 'utf8' }) as string[]).sort();
}

/** Poll until `check` returns a value (not undefined/false) or the deadline passes. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The two sites most CLI files use: site1 with a MariaDB and a PostgreSQL database, site2 a MariaDB shop. */
export const TWO_SITES: Record<string, SiteSpec> = {
  site1: { mysql: ['a_wp'], pgsql: ['a_pg'] },
  site2: { mysql: ['b_shop'] },
};

export interface SandboxPool {
  /** Start the file's servers (in its beforeAll, before seeding them). */
  start(): Promise<Servers>;
  /** A sandbox on those servers: the file's defaults, then `options` (configs deep-merged). */
  sandbox(options?: SandboxOptions): Promise<Sandbox>;
  /** Every sandbox made, then the servers (in the file's afterAll). */
  destroy(): Promise<void>;
}

/** One test file's servers and the sandboxes it makes on them, torn down together. */
export function sandboxPool(defaults: SandboxOptions = {}): SandboxPool {
  let servers: Servers | undefined;
  const made: Sandbox[] = [];
  return {
    async start() {
      servers = await startServers();
      return servers;
    },
    async sandbox(options = {}) {
      if (!servers) throw new Error('sandboxPool: start() first');
      const config = deepMerge(defaults.config ?? {}, options.config ?? {});
      const sb = await createSandbox(servers, { ...defaults, ...options, config });
      made.push(sb);
      return sb;
    },
    async destroy() {
      await Promise.allSettled(made.map((s) => s.destroy()));
      await servers?.destroy();
    },
  };
}
