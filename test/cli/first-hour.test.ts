/**
 * An admin's first hour (issue 28), through the BUILT CLI against real MariaDB/PostgreSQL
 * servers, real restic and borg: `config validate` checks what a run will need, repo-init is
 * idempotent and a run without a repository stops before dumping, `list RUN` and `restore db`
 * find things, `--dry-run` changes nothing, help and errors are one line each.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Servers } from '../../lib/throwaway/servers.js';
import { CLI, EXPORT_SCOPE, REPO, sandboxPool, TWO_SITES, type Sandbox } from '../helpers/sandbox.js';

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

// ---------------------------------------------------------------------------------------------

const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/** The CLI on a real pseudo-terminal (script(1)): what an admin sees. Output is stdout and stderr together. */
async function onTerminal(sb: Sandbox, args: string[]): Promise<{ exitCode: number; text: string }> {
  const line = [process.execPath, CLI, '--config', sb.configFile, ...args].map(q).join(' ');
  const r = await execa('script', ['-qec', line, '/dev/null'], { env: { ...sb.env, TERM: 'xterm' } as Record<string, string>, extendEnv: true, reject: false, stdin: 'ignore', timeout: 170_000 });
  // What stays on the screen: a line rewritten in place (\r, erase to the end) shows its last state.
  const screen = String(r.stdout)
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((l) => l.split('\r').at(-1)!.replace(/\x1b\[[0-9;]*[A-Za-z]/g, ''))
    .join('\n');
  return { exitCode: r.exitCode ?? -1, text: screen };
}

describe('finding things', () => {
  let sb: Sandbox;
  let runId: string;
  beforeAll(async () => {
    sb = await pool.sandbox();
    const r = await sb.cli(['dump']);
    expect(r.exitCode, r.stderr).toBe(0);
    runId = sb.runDirs()[0]!;
  });

  it('list RUN and list --run ID: each database with site, kind, size, lock mode, verified or not', async () => {
    const before = await sb.cli(['--json', 'list', runId]);
    expect(before.exitCode, before.stderr).toBe(0);
    const shown = JSON.parse(before.stdout) as { databases: { site: string; kind: string; database: string; bytes?: number; lockMode: string; verified: string }[]; backup: { text: string } };
    const row = (name: string) => shown.databases.find((d) => d.database === name)!;
    // Sizes are the files' own; lock modes follow the tables' engines on the server (InnoDB, MyISAM).
    const m = sb.manifest(runId);
    for (const e of m.entries.filter((x) => x.object === 'database')) expect(row(e.database!).bytes).toBe(statSync(join(sb.dumpsDir, runId, e.path!)).size);
    expect((await servers.mariadb.sql("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA='b_shop'")).trim()).toBe('MyISAM');
    expect(row('a_wp')).toMatchObject({ site: 'site1', kind: 'mysql', lockMode: 'single-transaction', verified: 'not verified' });
    expect(row('b_shop')).toMatchObject({ site: 'site2', kind: 'mysql', lockMode: 'lock-tables', verified: 'not verified' });
    expect(row('a_pg')).toMatchObject({ site: 'site1', kind: 'postgresql', verified: 'not verified' });
    expect(shown.backup.text).toMatch(/^none \(engine none/);
    const v = await sb.cli(['verify', '--run', runId]);
    expect(v.exitCode, v.stderr).toBe(0);
    const after = await sb.cli(['list', '--run', runId]);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(after.stdout).toMatch(/^ {2}site1 +mysql +a_wp +[\d.]+ (B|KiB) +single-transaction +verified$/m);
    expect(after.stdout).toMatch(/^ {2}site2 +mysql +b_shop +[\d.]+ (B|KiB) +lock-tables +verified$/m);
    expect(after.stdout).toMatch(/^engine backup: none/m);
  });

  it('restore db of an unknown name: exit 8, the closest names and the runs that hold them', async () => {
    const r = await sb.cli(['restore', 'db', 'a_shp']);
    expect(r.exitCode).toBe(8);
    expect(r.stderr).toContain("no local run holds a database named 'a_shp'");
    expect(r.stderr).toMatch(new RegExp(`^ {2}b_shop {2}\\(mysql, site2\\): run ${runId}$`, 'm'));
    expect(r.stdout).toBe('');
    // On a terminal: the same lines, once (the restore journal's log line stays in the log file).
    const t = await onTerminal(sb, ['restore', 'db', 'a_shp']);
    expect(t.exitCode).toBe(8);
    expect(t.text.trim()).toBe(r.stderr.trim());
  });

  it('restore db --socket / --host --port: into another MariaDB and PostgreSQL server, same content as the original', async () => {
    const { startMariadb } = await import('../../lib/throwaway/mariadb.js');
    const { startPostgres } = await import('../../lib/throwaway/postgres.js');
    const [my2, pg2] = await Promise.all([startMariadb(), startPostgres()]);
    try {
      const my = await sb.cli(['restore', 'db', 'b_shop', '--socket', my2.socket]);
      expect(my.exitCode, my.stderr).toBe(0);
      expect(my.stdout).toContain(`restored mysql database 'b_shop' on ${my2.socket} from local run ${runId}`);
      const sum = (s: { sql(x: string): Promise<string> }) => s.sql('CHECKSUM TABLE b_shop.items EXTENDED; SHOW CREATE TABLE b_shop.items');
      expect(await sum(my2)).toBe(await sum(servers.mariadb));
      const pg = await sb.cli(['restore', 'db', 'a_pg', '--host', pg2.socketDir, '--port', String(pg2.port)]);
      expect(pg.exitCode, pg.stderr).toBe(0);
      const rows = (s: { sql(x: string, d?: string): Promise<string> }) => s.sql('SELECT * FROM notes ORDER BY id', 'a_pg');
      expect(await rows(pg2)).toBe(await rows(servers.postgres));
      // The configured servers were not touched: still one a_pg, its row as it was.
      expect(await rows(servers.postgres)).toBe('1|pg note');
    } finally {
      await Promise.all([my2.destroy(), pg2.destroy()]);
    }
  });

  it('dump --dry-run and run --dry-run print the plan and change nothing', async () => {
    const before = footprint(sb);
    for (const verb of ['dump', 'run']) {
      const r = await sb.cli([verb, '--dry-run']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^${verb} --dry-run: nothing will be written`));
      expect(r.stdout).toMatch(/^ {2}mysql: server [^\n]*, \d+ database\(s\) on it/m);
      expect(r.stdout).toMatch(/^ {2}site2:\n {4}mysql +b_shop +lock-tables +~[\d.]+ (B|KiB)$/m);
      expect(r.stdout).toMatch(/^ {4}mysql +a_wp +single-transaction +~/m);
      expect(r.stdout).toMatch(new RegExp(`^ {2}dumps: \\d+ into ${sb.dumpsDir.replace(/[.]/g, '\\.')}; about .* \\(\\d+ of \\d+ dumps as big as in run ${runId}.*; .* free$`, 'm'));
      expect(r.stdout).toMatch(/^ {2}backup: (none|none: dumps only)/m);
    }
    expect(footprint(sb)).toEqual(before);
    expect(sb.runDirs()).toEqual([runId]);
  });
});

describe('help and errors: one line each', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await pool.sandbox();
  });

  it('an unknown option or command: one line and a hint, exit 2', async () => {
    const opt = await sb.cli(['dump', '--bogus']);
    expect(opt.exitCode).toBe(2);
    expect(opt.stderr.trim().split('\n')).toEqual(["error: unknown option '--bogus'", '(run with --help for usage)']);
    const cmd = await sb.cli(['dumpp']);
    expect(cmd.exitCode).toBe(2);
    expect(cmd.stderr.trim().split('\n')).toEqual(["error: unknown command 'dumpp'", '(Did you mean dump?)', '(run with --help for usage)']);
  });

  it('--help of a subcommand shows the global options; every option of every command is described', async () => {
    const h = await sb.cli(['dump', '--help']);
    expect(h.stdout).toMatch(/Global Options:[\s\S]*--config <file> +configuration file/);
    for (const args of [['bacula', 'config'], ['dump'], ['run'], ['restore', 'db'], ['list'], ['config', 'validate'], ['hook', 'pre-backup']]) {
      const r = await sb.cli([...args, '--help']);
      const options = r.stdout.split('\n').filter((l) => /^ {2}-/.test(l));
      expect(options.length, args.join(' ')).toBeGreaterThan(1);
      // An option line without a description is the flag alone (commander pads descriptions after two spaces).
      for (const l of options) expect(l.trim(), `${args.join(' ')}: ${l}`).toMatch(/\S {2,}\S/);
    }
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    const r = await sb.cli(['--version']);
    expect(r).toMatchObject({ exitCode: 0, stdout: pkg.version });
  });

  it('on a terminal a configuration error is printed once', async () => {
    writeFileSync(sb.configFile, 'dumps:\n  kep: 2\n');
    const r = await onTerminal(sb, ['dump']);
    expect(r.exitCode).toBe(2);
    expect(r.text.trim()).toBe(`apiscp-backup: ${sb.configFile}:2: dumps.kep: unknown key (did you mean 'keep'?)`);
    sb.writeConfig();
  });
});

describe('counts, units, paths and one line per event', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await pool.sandbox();
  });

  it('-v shows each database dumped once with its name, site, size, lock mode and time; --stats ends with the table', async () => {
    const r = await sb.cli(['-v', 'dump', '--stats']);
    expect(r.exitCode, r.stderr).toBe(0);
    const runId = sb.runDirs().at(-1)!;
    for (const e of sb.manifest(runId).entries.filter((x) => x.status === 'ok')) {
      const name = e.database ?? e.object;
      const said = r.stderr.split('\n').filter((l) => l.startsWith(`debug: dumped ${e.kind} ${name} (`));
      expect(said, `${e.kind} ${name}`).toHaveLength(1);
      expect(said[0]).toMatch(new RegExp(`^debug: dumped ${e.kind} ${name} \\(${e.site}\\): \\d+\\.\\d MiB, ${e.lockMode ?? 'no lock mode'}, \\d+\\.\\d s$`));
    }
    expect(r.stderr).not.toMatch(/^debug: dumped$/m);
    // The table: one row per dump, the size its file has.
    const m = sb.manifest(runId);
    expect(r.stdout.split('\n')[0]).toMatch(new RegExp(`^run ${runId}: ${m.entries.length} dump\\(s\\), `));
    expect(r.stdout).toMatch(/^kind +database +site +size +lock mode +time$/m);
    const shop = m.entries.find((e) => e.database === 'b_shop')!;
    expect(statSync(join(sb.dumpsDir, runId, shop.path!)).size).toBe(shop.bytes);
    expect(r.stdout).toMatch(/^mysql +b_shop +site2 +[\d.]+ (B|KiB) +lock-tables +\d+\.\d s$/m);
  });

  it('status counts databases as list does (not the users/roles exports), as many as the servers have', async () => {
    const myCount = Number((await servers.mariadb.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys')")).trim());
    const pgCount = Number((await servers.postgres.sql('SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate')).trim());
    // The panel's own exports off, as install leaves them: status is OK and its headline says the count.
    sb.writePanelState({ ...sb.readPanelState(), scopes: { [EXPORT_SCOPE]: false } });
    const s = await sb.cli(['status']);
    expect(s.exitCode, s.stdout).toBe(0);
    expect(s.stdout).toMatch(new RegExp(`\\(engine none, ${myCount + pgCount} databases\\)`));
    const l = await sb.cli(['list']);
    expect(l.stdout).toMatch(new RegExp(` ${myCount + pgCount} database\\(s\\) `));
  });

  it('list sizes are in the engine\'s own units: Bacula\'s MB is 10^6 bytes, restic\'s MiB 2^20', async () => {
    const { engineSize } = await import('../../lib/cli/commands/list.js');
    // Bacula's own job report for 471,500,000 bytes says "471.5 MB"; restic's for 447 * 2^20 "447.000 MiB".
    expect(engineSize('bacula', 471_500_000)).toBe('471.5 MB');
    expect(engineSize('restic', 447 * 2 ** 20)).toBe('447.0 MiB');
  });

  it('bacula config with a relative --config writes the absolute path into the RunScripts', async () => {
    const r = await execa(process.execPath, [CLI, '--config', 'etc/apiscp-backup/config.yaml', 'bacula', 'config', '--layout', 'stock'], { cwd: sb.root, env: sb.env as Record<string, string>, reject: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const commands = String(r.stdout).split('\n').filter((l) => /Command = /.test(l));
    expect(commands.length).toBeGreaterThanOrEqual(2);
    for (const c of commands) expect(c).toContain(`--config ${sb.configFile}`);
    expect(String(r.stdout)).not.toMatch(/--config etc\//);
  });

  it('on a terminal: dump ends with where it went, verify prints each database once and a verdict; under cron (env -i, no terminal) both are silent', async () => {
    const d = await onTerminal(sb, ['dump']);
    expect(d.exitCode, d.text).toBe(0);
    const runId = sb.runDirs().at(-1)!;
    expect(d.text.trim().split('\n').at(-1)).toBe(`${sb.manifest(runId).entries.filter((e) => e.status === 'ok').length} dump(s) written to ${join(sb.dumpsDir, runId)}`);
    const v = await onTerminal(sb, ['verify', '--run', runId]);
    expect(v.exitCode, v.text).toBe(0);
    for (const db of ['a_wp', 'b_shop', 'a_pg']) expect(v.text.split('\n').filter((l) => l.includes(`/${db}`)), `${db}:\n${v.text}`).toHaveLength(1);
    expect(v.text.trim().split('\n').at(-1)).toMatch(new RegExp(`^verify of run ${runId}: (\\d+) of \\1 dump\\(s\\) verified, 0 failed`));
    const cronEnv = ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...Object.entries(sb.env).filter(([, val]) => val !== undefined).map(([k, val]) => `${k}=${val}`)];
    for (const args of [['dump'], ['verify']]) {
      const r = await execa('env', ['-i', ...cronEnv, process.execPath, CLI, '--config', sb.configFile, ...args], { reject: false, stdin: 'ignore' });
      expect({ args, code: r.exitCode, out: String(r.stdout), err: String(r.stderr) }).toEqual({ args, code: 0, out: '', err: '' });
    }
  });
});
