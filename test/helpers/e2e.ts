import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import type { Manifest } from '../../lib/model/manifest.js';
import { expandBackupPaths } from '../../lib/plan/paths.js';
import { getEngine } from '../../lib/engine/index.js';
import type { EngineName } from '../../lib/engine/types.js';
import { memoryLogger } from '../../lib/log.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import type { TreeInfo } from '../../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import type { PostgresServer } from '../../lib/throwaway/postgres.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { databaseEntries, loadDump } from '../../lib/demo/db-checks.js';

/**
 * End-to-end helpers: the BUILT CLI as a subprocess, real sandbox MariaDB/PostgreSQL servers,
 * seeded databases with the objects dumps get wrong, and "load the restored dumps into fresh
 * databases and compare row checksums". Only the ApisCP panel is a stand-in (sandbox/fake-apiscp).
 */

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(REPO, 'dist/scripts/apiscp-backup.js');
export const NODE = process.execPath;
/** What cron gives a job: no HOME, no TERM, this PATH and nothing else. */
export const CRON_PATH = '/sbin:/bin:/usr/sbin:/usr/bin';

/**
 * The tests drive dist/, so it must be at least as new as the sources. Fail with the fix rather
 * than test stale code (`npm test` builds first; `npx vitest run FILE` does not).
 */
export function assertBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run \`npm run build\` first`);
  const built = statSync(CLI).mtimeMs;
  const newer: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && statSync(p).mtimeMs > built + 1000) newer.push(relative(REPO, p));
    }
  };
  for (const d of ['lib', 'scripts', 'hooks']) walk(join(REPO, d));
  if (newer.length) throw new Error(`dist/ is older than ${newer.slice(0, 3).join(', ')}: run \`npm run build\` first`);
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export interface CliOptions {
  /** Replace the environment entirely (cron): `{ PATH: CRON_PATH }`. */
  env?: Record<string, string>;
  /** Run something else than `node CLI` (a wrapper script). */
  file?: string;
  cwd?: string;
  onSpawn?: (child: ChildProcess) => void;
}

/** `node dist/scripts/apiscp-backup.js ARGS` with stdio piped (not a TTY: the cron-quiet mode). */
export function cli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  const file = opts.file ?? NODE;
  const argv = opts.file ? [...args] : [CLI, ...args];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { env: opts.env ?? { ...process.env }, cwd: opts.cwd ?? REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', reject);
    child.once('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms: Date.now() - started }),
    );
    opts.onSpawn?.(child);
  });
}

// ---------------------------------------------------------------------------------------------
// Databases

export async function stopServers(s: Servers | undefined): Promise<void> {
  await s?.destroy();
}

/** Site-owned names (prefix `siteN_`-like as ApisCP makes them) plus a unicode one. */
export const MY_DBS = ['site1_shop', 'dé_日本'] as const;
export const PG_DBS = ['site2_blog', 'ünï_pg'] as const;

const qm = (n: string): string => '`' + n.replace(/`/g, '``') + '`';
const qp = (n: string): string => '"' + n.replace(/"/g, '""') + '"';
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');

/** Tables (one with every byte value, one filled by a trigger), a view, unicode rows. */
export async function seedMysql(my: MariadbServer, db: string, rows = 50): Promise<void> {
  const values = Array.from({ length: rows }, (_, i) => `(${i + 10}, 'row ${i} ✓ 日本', X'${ALL_BYTES}')`).join(',');
  await my.sql(`CREATE DATABASE ${qm(db)} CHARACTER SET utf8mb4;
    USE ${qm(db)};
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100), data BLOB) ENGINE=InnoDB;
    CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB;
    CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (note) VALUES (CONCAT('added ', NEW.id));
    INSERT INTO items VALUES (1, 'ünïcødé ✓', X'00ff00'), (2, 'tab\\there', NULL), ${values};
    CREATE VIEW cheap AS SELECT id, name FROM items WHERE id < 20;`);
}

export async function seedPostgres(pg: PostgresServer, db: string, rows = 50): Promise<void> {
  await pg.sql(`CREATE DATABASE ${qp(db)} ENCODING 'UTF8'`);
  await pg.sql(
    `CREATE TABLE items (id int PRIMARY KEY, name text, data bytea);
     CREATE TABLE audit (id serial PRIMARY KEY, note text);
     CREATE FUNCTION items_ai() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (note) VALUES ('added ' || NEW.id); RETURN NEW; END $$;
     CREATE TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION items_ai();
     INSERT INTO items VALUES (1, 'ünïcødé ✓', '\\x00ff00'), (2, E'tab\\there', NULL);
     INSERT INTO items SELECT g + 10, 'row ' || g || ' ✓ 日本', decode('${ALL_BYTES}', 'hex') FROM generate_series(0, ${rows - 1}) g;
     CREATE VIEW cheap AS SELECT id, name FROM items WHERE id < 20;`,
    db,
  );
}

export async function seedAll(s: Servers): Promise<void> {
  for (const db of MY_DBS) await seedMysql(s.mariadb, db);
  for (const db of PG_DBS) await seedPostgres(s.postgres, db);
}

/** Row checksums per table plus the number of views and triggers: what a good restore keeps. */
export async function mysqlFingerprint(my: MariadbServer, db: string): Promise<Record<string, string>> {
  const s = `CONVERT(UNHEX('${Buffer.from(db).toString('hex')}') USING utf8mb4)`;
  const out: Record<string, string> = {};
  for (const t of ['items', 'audit']) out[t] = (await my.sql(`CHECKSUM TABLE ${qm(db)}.${t} EXTENDED`)).trim().split('\t').pop()!;
  out.views = (await my.sql(`SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA=${s}`)).trim();
  out.triggers = (await my.sql(`SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=${s}`)).trim();
  out.rows = (await my.sql(`SELECT COUNT(*) FROM ${qm(db)}.items`)).trim();
  return out;
}

export async function pgFingerprint(pg: PostgresServer, db: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of ['items', 'audit']) out[t] = await pg.sql(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM ${t} t`, db);
  out.views = await pg.sql(`SELECT count(*) FROM pg_views WHERE schemaname = 'public'`, db);
  out.triggers = await pg.sql(`SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal`, db);
  out.rows = await pg.sql('SELECT count(*) FROM items', db);
  return out;
}

let loads = 0;

/**
 * Load every database dump of a (restored) run directory into FRESH databases `<prefix>N` on the
 * given servers, found through the run's manifest.json; returns original name → fresh name.
 */
export async function loadRun(runDir: string, into: Servers, prefix: string): Promise<{ mysql: Map<string, string>; postgresql: Map<string, string>; manifest: Manifest }> {
  const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as Manifest;
  const result = { mysql: new Map<string, string>(), postgresql: new Map<string, string>(), manifest };
  for (const e of databaseEntries(manifest)) {
    const fresh = `${prefix}${++loads}`;
    await loadDump(e, runDir, { mysql: into.mariadb, postgresql: into.postgres }, fresh);
    if (e.kind === 'mysql' || e.kind === 'postgresql') result[e.kind].set(e.database!, fresh);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Config and engines

export interface ConfigParams {
  readonly root: string;
  readonly servers?: Servers;
  readonly engine: EngineName;
  readonly extra?: Record<string, unknown>;
}

/** A config.yaml (JSON is YAML) for the sandbox: every system path below `root`, no panel. */
export function writeConfig(file: string, p: ConfigParams): string {
  const dbs = p.servers
    ? {
        mysql: { enabled: true, socket: p.servers.mariadb.socket, defaults_file: join(p.root, 'no-my.cnf') },
        postgresql: { enabled: true, host: p.servers.postgres.socketDir, port: p.servers.postgres.port },
      }
    : { mysql: { enabled: false }, postgresql: { enabled: false } };
  const config = { engine: p.engine, paths: { root: p.root }, panel: { enabled: false }, databases: dbs, lock: { wait: '2s' }, dumps: { retry_wait: '200ms' }, ...p.extra };
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  return file;
}

/** An ApisCP tree under `root` backed up by one engine, with its config file (e2e and restore files). */
export interface EngineSandbox {
  readonly engine: EngineName;
  readonly dir: string;
  readonly root: string;
  readonly tree: TreeInfo;
  readonly config: string;
  readonly loaded: LoadedConfig;
}

/**
 * An engine's config section with a fresh repository in `dir/repo` (initialised for restic and
 * borg), keyed by a passphrase in the 0600 file `dir/secret`. keep.last: every backup a test
 * makes survives the retention run that follows it.
 */
export async function engineRepository(engine: EngineName, dir: string, passphrase: string): Promise<Record<string, unknown>> {
  const secret = join(dir, 'secret');
  mkdirSync(dir, { recursive: true });
  writeFileSync(secret, passphrase + '\n', { mode: 0o600 });
  const repo = join(dir, 'repo');
  if (engine === 'restic') await run(cmd('restic', ['init'], { env: { RESTIC_REPOSITORY: repo, RESTIC_PASSWORD_FILE: secret } }));
  if (engine === 'borg') await run(cmd('borg', ['init', '--encryption=repokey'], { env: { BORG_REPO: repo, BORG_PASSCOMMAND: `cat ${secret}` } }));
  switch (engine) {
    case 'duplicity':
      return { duplicity: { target: `file://${repo}`, passphrase_file: secret } };
    case 'restic':
      return { restic: { repository: repo, password_file: secret, keep: { last: 100 } } };
    case 'borg':
      return { borg: { repository: repo, passphrase_file: secret, keep: { last: 100 } } };
    default:
      return {};
  }
}

/** Restore the latest backup with the engine module (what an admin's restore does) into `dir`. */
export async function engineRestore(configFile: string, dir: string): Promise<LoadedConfig> {
  const loaded = loadConfig({ file: configFile });
  const engine = getEngine(loaded.config.engine);
  const { sources, excludes } = await expandBackupPaths(loaded.paths);
  mkdirSync(dir, { recursive: true });
  await engine.restore!({ loaded, log: memoryLogger(), sources, excludes }, dir);
  return loaded;
}

/** How many backups the engine's repository holds (snapshots, archives, duplicity backup sets). */
export async function countBackups(loaded: LoadedConfig): Promise<number> {
  const c = loaded.config;
  switch (c.engine) {
    case 'restic': {
      const r = await run(cmd('restic', ['snapshots', '--json'], { env: { RESTIC_REPOSITORY: c.restic.repository!, RESTIC_PASSWORD_FILE: c.restic.password_file! } }));
      return (JSON.parse(r.stdout) as unknown[]).length;
    }
    case 'borg': {
      const r = await run(cmd('borg', ['list', '--short'], { env: { BORG_REPO: c.borg.repository!, BORG_PASSCOMMAND: `cat ${c.borg.passphrase_file!}` } }));
      return r.stdout.split('\n').filter(Boolean).length;
    }
    case 'duplicity': {
      const dir = c.duplicity.target!.replace(/^file:\/\//, '');
      if (!existsSync(dir)) return 0;
      return readdirSync(dir).filter((n) => /^duplicity-(full|inc)\..*\.manifest/.test(n)).length;
    }
    default:
      throw new Error(`countBackups: ${c.engine}`);
  }
}

export function readStatus(loaded: LoadedConfig): Record<string, any> {
  return JSON.parse(readFileSync(loaded.paths.statusFile, 'utf8')) as Record<string, any>;
}

export function rmrf(...paths: string[]): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
}

/**
 * The servers every e2e file needs: one seeded pair whose databases get backed up, one empty pair
 * the restored dumps are loaded into, and the originals' fingerprints to compare with.
 */
export async function seededServers(): Promise<{ servers: Servers; fresh: Servers; original: Record<string, Record<string, string>> }> {
  assertBuilt();
  const [servers, fresh] = await Promise.all([startServers(), startServers()]);
  await seedAll(servers);
  const original: Record<string, Record<string, string>> = {};
  for (const db of MY_DBS) original[`mysql:${db}`] = await mysqlFingerprint(servers.mariadb, db);
  for (const db of PG_DBS) original[`postgresql:${db}`] = await pgFingerprint(servers.postgres, db);
  return { servers, fresh, original };
}

/** The restored run's databases, loaded into `fresh`, match the originals row for row. */
export async function expectSameDatabases(loaded: Awaited<ReturnType<typeof loadRun>>, fresh: Servers, original: Record<string, Record<string, string>>, expectEqual: (a: unknown, b: unknown, what: string) => void): Promise<void> {
  for (const db of MY_DBS) expectEqual(await mysqlFingerprint(fresh.mariadb, loaded.mysql.get(db)!), original[`mysql:${db}`], db);
  for (const db of PG_DBS) expectEqual(await pgFingerprint(fresh.postgres, loaded.postgresql.get(db)!), original[`postgresql:${db}`], db);
}

/** A live MariaDB (seeded, dumped once through the CLI) and a fresh one, each with a config of its own. */
export interface LiveAndFresh {
  readonly live: MariadbServer;
  readonly fresh: MariadbServer;
  /** The built CLI against the live server, or the fresh one (same paths.root: the same dumps). */
  readonly toLive: (args: readonly string[]) => Promise<CliResult>;
  readonly toFresh: (args: readonly string[]) => Promise<CliResult>;
  readonly dumpsDir: string;
  readonly stateDir: string;
  destroy(): Promise<void>;
}

/**
 * Restores on the server a dump came from and on a server that never had it (a new machine),
 * compared with the live one: start both, run `before` then `seed` on the live one, dump it.
 * `base` holds the sandbox root and the configs (verify.work_dir too).
 */
export async function liveAndFresh(base: string, seed: string, before: readonly string[] = []): Promise<LiveAndFresh> {
  const [live, fresh] = await Promise.all([startMariadb(), startMariadb()]);
  for (const sql of [...before, seed]) await live.sql(sql);
  const root = join(base, 'root');
  const config = (server: MariadbServer, name: string): string =>
    writeConfig(join(base, `${name}.yaml`), {
      root,
      engine: 'none',
      extra: {
        databases: { mysql: { enabled: true, socket: server.socket, defaults_file: join(root, 'no-my.cnf') }, postgresql: { enabled: false } },
        verify: { schedule: 'off', work_dir: base },
      },
    });
  const liveConfig = config(live, 'live');
  const freshConfig = config(fresh, 'fresh');
  const toLive = (args: readonly string[]): Promise<CliResult> => cli(['--config', liveConfig, ...args]);
  const r = await toLive(['dump']);
  if (r.code !== 0) throw new Error(`the first dump failed (exit ${r.code}): ${r.stderr}`);
  return {
    live,
    fresh,
    toLive,
    toFresh: (args) => cli(['--config', freshConfig, ...args]),
    dumpsDir: join(root, 'var/backup/apiscp-backup'),
    stateDir: join(root, 'var/lib/apiscp-backup'),
    destroy: async () => {
      await Promise.allSettled([live.destroy(), fresh.destroy()]);
    },
  };
}
