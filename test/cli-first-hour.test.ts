/**
 * An admin's first hour (issue 28), through the BUILT CLI against real MariaDB/PostgreSQL
 * servers, real restic and borg: `config validate` checks what a run will need, repo-init is
 * idempotent and a run without a repository stops before dumping, `list RUN` and `restore db`
 * find things, `--dry-run` changes nothing, help and errors are one line each.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Servers } from '../lib/sandbox/servers.js';
import { sandboxPool, TWO_SITES, type Sandbox } from './helpers/sandbox.js';

const pool = sandboxPool({ sites: TWO_SITES });
let servers: Servers;

beforeAll(async () => {
  servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; USE a_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world');
    CREATE DATABASE b_shop; USE b_shop;
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=MyISAM;
    INSERT INTO items VALUES (1, 'widget');
  `);
  await servers.postgres.sql('CREATE DATABASE a_pg');
  await servers.postgres.sql("CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'pg note');", 'a_pg');
});

afterAll(() => pool.destroy());

/** The config file's line holding `text` (1-based), as an admin would find it. */
function lineOf(sb: Sandbox, text: string): number {
  const i = readFileSync(sb.configFile, 'utf8').split('\n').findIndex((l) => l.includes(text));
  if (i < 0) throw new Error(`${text} not in ${sb.configFile}`);
  return i + 1;
}

/** Everything under the sandbox's dumps and state directories, and whether the lock file is there. */
function footprint(sb: Sandbox): { dumps: string[]; state: string[]; lock: boolean } {
  const list = (d: string): string[] => (existsSync(d) ? (readdirSync(d, { recursive: true, encoding: 'utf8' }) as string[]).sort() : []);
  return { dumps: list(sb.dumpsDir), state: list(sb.stateDir), lock: existsSync(sb.lockPath) };
}

function secret(sb: Sandbox, name: string, mode: number): string {
  const file = join(sb.root, 'etc/apiscp-backup', name);
  mkdirSync(join(sb.root, 'etc/apiscp-backup'), { recursive: true });
  writeFileSync(file, 'correct horse\n', { mode });
  chmodSync(file, mode);
  return file;
}

describe('config validate checks what a run will need', () => {
  it('every problem at once, each with file:line and the fix: engine keys, secret files, directories', async () => {
    const sb = await pool.sandbox();
    const loose = secret(sb, 'mysql.password', 0o644);
    const missing = join(sb.root, 'etc/apiscp-backup/pg.pass');
    const blocker = join(sb.root, 'a-file');
    writeFileSync(blocker, 'not a directory\n');
    sb.writeConfig({
      engine: 'restic',
      databases: { mysql: { password_file: loose }, postgresql: { password_file: missing } },
      dumps: { dir: join(blocker, 'dumps') },
    });
    const r = await sb.cli(['config', 'validate']);
    expect(r.exitCode).toBe(2);
    const f = sb.configFile;
    expect(r.stderr).toContain(`${f}:${lineOf(sb, 'engine: restic')}: restic.repository: not set: engine restic cannot run without it (fix: set restic.repository`);
    expect(r.stderr).toContain(`${f}:${lineOf(sb, 'engine: restic')}: restic.password_file: not set`);
    expect(r.stderr).toContain(`${f}:${lineOf(sb, `password_file: ${loose}`)}: databases.mysql.password_file: ${loose}: mode 0644: other users can read the secret (fix: chmod 600 ${loose})`);
    expect(r.stderr).toContain(`${f}:${lineOf(sb, `password_file: ${missing}`)}: databases.postgresql.password_file: ${missing}: no such file`);
    expect(r.stderr).toContain(`dumps.dir: ${join(blocker, 'dumps')}: ${blocker} is not a directory`);
    expect(r.stderr).toMatch(/5 problem\(s\) a run would meet/);
    // One line per problem: nothing printed twice.
    const lines = r.stderr.trim().split('\n');
    expect(new Set(lines).size).toBe(lines.length);
  });

  it('several syntax problems are all listed, in file order', async () => {
    const sb = await pool.sandbox();
    writeFileSync(sb.configFile, 'engine: none\ndumps:\n  kep: 2\nlock:\n  wiat: 5m\n');
    const r = await sb.cli(['config', 'validate']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${sb.configFile}:3: dumps.kep: unknown key (did you mean 'keep'?)`);
    expect(r.stderr).toContain(`${sb.configFile}:5: lock.wiat: unknown key (did you mean 'wait'?)`);
    expect(r.stderr.indexOf('dumps.kep')).toBeLessThan(r.stderr.indexOf('lock.wiat'));
    expect(r.stderr).not.toMatch(/more problem/);
  });

  it('a directory given as the config file is a clear error, not EISDIR', async () => {
    const sb = await pool.sandbox();
    const dir = join(sb.root, 'etc/apiscp-backup');
    const r = await sb.cli(['--config', dir, 'config', 'validate'], { withConfig: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe(`apiscp-backup: ${dir}: is a directory; --config takes the configuration file itself (e.g. ${join(dir, 'config.yaml')})`);
  });

  it('a group-readable password file stops dump and run at once with the same words (exit 2), nothing dumped', async () => {
    const sb = await pool.sandbox();
    const loose = secret(sb, 'mysql.password', 0o640);
    sb.writeConfig({ databases: { mysql: { password_file: loose } } });
    for (const command of ['dump', 'run']) {
      const r = await sb.cli([command]);
      expect(r.exitCode, command).toBe(2);
      expect(r.stderr.trim()).toBe(`apiscp-backup: ${sb.configFile}:${lineOf(sb, `password_file: ${loose}`)}: databases.mysql.password_file: ${loose}: mode 0640: other users can read the secret (fix: chmod 600 ${loose})`);
    }
    expect(sb.runDirs()).toEqual([]);
    chmodSync(loose, 0o600);
    expect((await sb.cli(['config', 'validate'])).exitCode).toBe(0);
  });

  it('--connect reaches each server and the repository and says what it found', async () => {
    const sb = await pool.sandbox();
    const pw = secret(sb, 'restic.password', 0o600);
    sb.writeConfig({ engine: 'restic', restic: { repository: join(sb.root, 'repo'), password_file: pw } });
    expect((await sb.cli(['repo-init'])).exitCode).toBe(0);
    const r = await sb.cli(['config', 'validate', '--connect']);
    expect(r.exitCode, r.stderr).toBe(0);
    // What the servers themselves say: their version and how many databases they hold.
    const myVersion = (await servers.mariadb.sql('SELECT VERSION()')).trim();
    const myCount = Number((await servers.mariadb.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys')")).trim());
    const pgVersion = (await servers.postgres.sql("SELECT current_setting('server_version')")).trim();
    const pgCount = Number((await servers.postgres.sql('SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate')).trim());
    expect(r.stdout).toMatch(new RegExp(`^ok  mysql: server ${myVersion.replace(/[.+]/g, '\\$&')}, ${myCount} database\\(s\\)`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^ok  postgresql: server ${pgVersion.split(' ')[0]!.replace(/\./g, '\\.')}.*, ${pgCount} database\\(s\\)`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^ok  restic repository ${join(sb.root, 'repo')}: reached, 0 backup\\(s\\) of this server`, 'm'));
    expect(r.stdout).toContain(`${sb.configFile}: valid`);
  });
});

describe('restic and borg set-up: idempotent, fails fast', () => {
  for (const engine of ['restic', 'borg'] as const) {
    it(`${engine}: run before repo-init stops before dumping and names apiscp-backup repo-init; a second repo-init says so, exit 0`, async () => {
      const sb = await pool.sandbox();
      const pw = secret(sb, `${engine}.password`, 0o600);
      const repo = join(sb.root, `${engine}-repo`);
      sb.writeConfig({ engine, [engine]: engine === 'restic' ? { repository: repo, password_file: pw } : { repository: repo, passphrase_file: pw } });
      const before = await sb.cli(['run']);
      expect(before.exitCode).toBe(5);
      expect(before.stderr).toContain(`no ${engine} repository at ${repo}: create it once with \`apiscp-backup repo-init\``);
      expect(sb.runDirs()).toEqual([]);
      const first = await sb.cli(['repo-init']);
      expect(first.exitCode, first.stderr).toBe(0);
      expect(first.stdout).toMatch(new RegExp(`created ${engine} repository ${repo}`));
      const second = await sb.cli(['repo-init']);
      expect(second.exitCode, second.stderr).toBe(0);
      expect(second.stdout.trim()).toBe(`${engine} repository ${repo} is already initialised: nothing to do`);
      const ran = await sb.cli(['run']);
      expect(ran.exitCode, ran.stderr).toBe(0);
      expect(sb.runDirs()).toHaveLength(1);
    });
  }
});
