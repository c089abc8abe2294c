/**
 * End to end through the BUILT CLI as a subprocess (how cron and Bacula run it): `dump`, `config`
 * and `scope` against real MariaDB/PostgreSQL servers, real mariadb-dump/pg_dump/zstd, real
 * mounts and signals. The only stand-in is ApisCP's cpcmd (sandbox/fake-apiscp).
 *
 * Tests inside a describe run in order and some build on the run the previous one made (the
 * "previous complete run" every fault must leave intact): that is stated in each test's name.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Manifest } from '../../lib/model/manifest.js';
import type { RunState } from '../../lib/report/run-state.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import type { Servers } from '../../lib/throwaway/servers.js';
import { EXPORT_SCOPE, sandboxPool, TWO_SITES, waitFor, type Sandbox } from '../helpers/sandbox.js';

const SITES = TWO_SITES;
const pool = sandboxPool({ sites: SITES });
const sandbox = pool.sandbox;
let servers: Servers;

beforeAll(async () => {
  servers = await pool.start();
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; USE a_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world');
    CREATE VIEW v_posts AS SELECT id, title FROM posts;
    CREATE DATABASE b_shop; USE b_shop;
    CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=MyISAM;
    INSERT INTO items VALUES (1, 'widget');
    CREATE DATABASE orphan; USE orphan;
    CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (42);
  `);
  await servers.postgres.sql('CREATE DATABASE a_pg');
  await servers.postgres.sql('CREATE DATABASE orphanpg');
  await servers.postgres.sql("CREATE TABLE notes (id int primary key, body text); INSERT INTO notes VALUES (1, 'pg note');", 'a_pg');
  await servers.postgres.sql('CREATE TABLE t (id int); INSERT INTO t VALUES (7);', 'orphanpg');
});

afterAll(() => pool.destroy());

// ---------------------------------------------------------------------------------------------

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Every file of every finished run, with its hash, plus where `latest` points. */
function snapshot(sb: Sandbox): { latest: string | undefined; files: Record<string, string> } {
  const files: Record<string, string> = {};
  for (const run of sb.runDirs().filter((n) => !n.endsWith('.inprogress'))) {
    const dir = join(sb.dumpsDir, run);
    for (const rel of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      const p = join(dir, rel);
      if (lstatSync(p).isFile()) files[join(run, rel)] = sha256(p);
    }
  }
  return { latest: sb.latest(), files };
}

/** The previous complete run is untouched: same files, same hashes, `latest` unchanged. */
function expectIntact(sb: Sandbox, before: ReturnType<typeof snapshot>): void {
  const now = snapshot(sb);
  expect(now.latest).toBe(before.latest);
  for (const [rel, hash] of Object.entries(before.files)) {
    expect(now.files[rel], rel).toBe(hash);
  }
}

/** Partial or temporary files anywhere in the dumps dir, and our leftovers in the CLI's TMPDIR. */
function leftovers(sb: Sandbox): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (/\.tmp$|\.inprogress$|\.tmp-/.test(name)) found.push(relative(sb.root, p));
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(sb.dumpsDir);
  walk(sb.stateDir);
  for (const name of existsSync(sb.tmpDir) ? readdirSync(sb.tmpDir) : []) found.push(relative(sb.root, join(sb.tmpDir, name)));
  return found;
}

function status(sb: Sandbox): RunState {
  return JSON.parse(readFileSync(sb.statusFile, 'utf8')) as RunState;
}

function mount(args: string[]): Promise<unknown> {
  return execa('mount', args);
}

async function umount(dir: string): Promise<void> {
  await execa('umount', [dir], { reject: false });
}

/** Pids of the CLI's children (the dump pipeline stages) right now, with their command lines. */
async function childrenOf(pid: number): Promise<{ pid: number; args: string }[]> {
  const r = await execa('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { reject: false });
  return String(r.stdout)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => ({ pid: Number(l.split(/\s+/)[0]), args: l.replace(/^\d+\s+/, '') }));
}

function alive(p: { pid: number; args: string }): boolean {
  try {
    return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() === p.args.trim();
  } catch {
    return false;
  }
}

/** The temporary file of a dump in progress in the sandbox (under `<runId>.inprogress/`). */
function growingTemp(sb: Sandbox, name: RegExp, minBytes: number): string | undefined {
  for (const run of sb.runDirs().filter((n) => n.endsWith('.inprogress'))) {
    const dir = join(sb.dumpsDir, run);
    let rels: string[];
    try {
      rels = readdirSync(dir, { recursive: true, encoding: 'utf8' });
    } catch {
      continue;
    }
    for (const rel of rels) {
      if (!name.test(rel) || !/\.tmp(-|$)/.test(rel)) continue;
      try {
        if (statSync(join(dir, rel)).size >= minBytes) return join(dir, rel);
      } catch {
        /* renamed or removed meanwhile */
      }
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

describe('dump: happy path', () => {
  let sb: Sandbox;
  let runId: string;
  let manifest: Manifest;

  it('is silent under cron (no TTY), exits 0, and points `latest` at the run', async () => {
    sb = await sandbox();
    const r = await sb.cli(['dump']);
    expect(r, r.stderr).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
    const runs = sb.runDirs();
    expect(runs).toHaveLength(1);
    runId = runs[0]!;
    expect(runId).toMatch(/^\d{8}T\d{6}Z/);
    expect(sb.latest()).toBe(runId);
    expect(leftovers(sb)).toEqual([]);
    manifest = sb.manifest(runId);
  });

  it('files each database under the site the panel says owns it, unknown ones under _server', () => {
    expect(manifest.status).toBe('complete');
    const byName = (kind: string, db: string | null) => manifest.entries.find((e) => e.kind === kind && e.database === db);
    expect(byName('mysql', 'a_wp')).toMatchObject({ site: 'site1', path: 'site1/mysql/a_wp.sql.zst', lockMode: 'single-transaction', status: 'ok' });
    expect(byName('mysql', 'b_shop')).toMatchObject({ site: 'site2', path: 'site2/mysql/b_shop.sql.zst', lockMode: 'lock-tables', status: 'ok' });
    expect(byName('mysql', 'orphan')).toMatchObject({ site: '_server', path: '_server/mysql/orphan.sql.zst', status: 'ok' });
    expect(byName('mysql', null)).toMatchObject({ object: 'users', site: '_server', path: '_server/mysql-users.sql.zst', status: 'ok' });
    expect(byName('postgresql', 'a_pg')).toMatchObject({ site: 'site1', path: 'site1/postgresql/a_pg.dump', lockMode: 'snapshot', status: 'ok' });
    expect(byName('postgresql', 'orphanpg')).toMatchObject({ site: '_server', path: '_server/postgresql/orphanpg.dump', status: 'ok' });
    expect(byName('postgresql', null)).toMatchObject({ object: 'globals', site: '_server', path: '_server/postgresql-globals.sql.zst', status: 'ok' });
    // The panel was asked (the stand-in logs every call), once per site and kind.
    const calls = readFileSync(sb.panelLog, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { argv: string[] }).argv.join(' '));
    expect(calls).toContain('-d site1 -o json mysql:list-databases');
    expect(calls).toContain('-d site2 -o json pgsql:list-databases');
  });

  it('manifest: every dump with a sha256 that matches the file, its lock mode and versions', () => {
    const dir = join(sb.dumpsDir, runId);
    expect(manifest.runId).toBe(runId);
    for (const e of manifest.entries) {
      expect(e.status, `${e.kind} ${e.database}`).toBe('ok');
      expect(e.path).toBeDefined();
      const file = join(dir, e.path!);
      expect(sha256(file), e.path).toBe(e.sha256);
      expect(statSync(file).size).toBe(e.bytes);
      expect(e.lockMode).toBeDefined();
      expect(e.serverVersion, e.path).toMatch(e.kind === 'mysql' ? /MariaDB/ : /^1\d\./);
      expect(e.clientVersion, e.path).toMatch(/\d+\.\d+/);
    }
    // Every file on disk is in the manifest (nothing stray, nothing unlisted).
    const onDisk = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((rel) => statSync(join(dir, rel)).isFile());
    expect(onDisk.sort()).toEqual([...manifest.entries.map((e) => e.path!), 'manifest.json'].sort());
  });

  it('files are 0600 and directories 0700', () => {
    const dir = join(sb.dumpsDir, runId);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(sb.dumpsDir).mode & 0o777).toBe(0o700);
    for (const rel of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      const st = lstatSync(join(dir, rel));
      expect((st.mode & 0o777).toString(8), rel).toBe(st.isDirectory() ? '700' : '600');
    }
  });

  it('the dumps hold the data (zstd SQL and pg_dump custom format)', async () => {
    const dir = join(sb.dumpsDir, runId);
    const sql = (await execa('zstd', ['-dc', join(dir, 'site1/mysql/a_wp.sql.zst')])).stdout;
    expect(sql).toMatch(/INSERT INTO `posts` VALUES\s*\(1,'hello'\),\s*\(2,'world'\)/);
    expect(sql).toMatch(/-- Dump completed/);
    const pg = (await execa(join(servers.postgres.binDir, 'pg_restore'), ['-f', '-', join(dir, 'site1/postgresql/a_pg.dump')])).stdout;
    expect(pg).toContain('pg note');
  });

  it('status.json records the run', () => {
    const s = status(sb);
    expect(s).toMatchObject({ runId, trigger: 'dump', status: 'ok', problems: [] });
    expect(s.dumps?.failed).toBe(0);
    expect(s.dumps?.ok).toBe(manifest.entries.length);
    expect(s.lastSuccessAt).toBeDefined();
  });
});

// ---------------------------------------------------------------------------------------------

describe('config: exit codes and messages', () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await sandbox();
  });

  const writeRaw = (text: string): void => writeFileSync(sb.configFile, text);

  it('malformed YAML → exit 2 naming the file and line', async () => {
    writeRaw(['engine: none', 'dumps:', '  keep: 2', ' concurrency: [1', ''].join('\n'));
    const r = await sb.cli(['dump']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${sb.configFile}:4:`);
    expect(r.stderr).toMatch(/invalid YAML/);
    expect(r.stdout).toBe('');
    expect(sb.runDirs()).toEqual([]);
  });

  it("an unknown key → exit 2 naming file, line, key and 'did you mean keep'", async () => {
    writeRaw(['engine: none', 'dumps:', '  compression: zstd', '  kep: 2', ''].join('\n'));
    const r = await sb.cli(['dump']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${sb.configFile}:4: dumps.kep: unknown key (did you mean 'keep'?)`);
  });

  it('a wrong type → exit 2 naming file, line and key', async () => {
    writeRaw(['engine: none', 'dumps:', '  compression: zstd', '', '  keep: three', ''].join('\n'));
    const r = await sb.cli(['config', 'validate']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${sb.configFile}:5: dumps.keep:`);
    expect(r.stderr).toMatch(/expected number/i);
  });

  it('config validate: silent exit 0 for a valid file, exit 2 for an invalid file given as argument', async () => {
    sb.writeConfig();
    expect(await sb.cli(['config', 'validate'])).toMatchObject({ exitCode: 0, stdout: '', stderr: '' });
    const json = await sb.cli(['--json', 'config', 'validate']);
    expect(JSON.parse(json.stdout)).toEqual({ valid: true, file: sb.configFile });
    const bad = join(sb.root, 'bad.yaml');
    writeFileSync(bad, 'lock:\n  wiat: 5m\n');
    const r = await sb.cli(['config', 'validate', bad]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${bad}:2: lock.wiat: unknown key (did you mean 'wait'?)`);
  });

  it('config print: the effective configuration with secrets redacted, password_file paths shown', async () => {
    const pwFile = join(sb.root, 'mysql.pw');
    writeFileSync(pwFile, 'pw-in-file-xyzzy\n', { mode: 0o600 });
    sb.writeConfig({
      databases: { mysql: { password_file: pwFile } },
      monitor: { heartbeat: { success: 'https://monitor:hb-s3cret-token@hc.example.test/ping/abc' } },
    });
    const r = await sb.cli(['config', 'print']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(pwFile);
    expect(r.stdout).toContain(sb.configFile);
    expect(r.stdout).not.toContain('hb-s3cret-token');
    expect(r.stdout).not.toContain('pw-in-file-xyzzy');
    expect(r.stdout).toContain('https://monitor:***@hc.example.test/ping/abc');
    const json = await sb.cli(['--json', 'config', 'print']);
    const shown = JSON.parse(json.stdout) as { databases: { mysql: { password_file: string } }; dumps: { keep: number } };
    expect(shown.databases.mysql.password_file).toBe(pwFile);
    expect(shown.dumps.keep).toBe(3);
    expect(json.stdout).not.toContain('hb-s3cret-token');
  });

  it('config init: writes a valid commented file (0600), never overwrites without --force', async () => {
    const file = join(sb.root, 'etc/new/config.yaml');
    const r = await sb.cli(['config', 'init', file]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^#/m);
    expect((await sb.cli(['config', 'validate', file])).exitCode).toBe(0);

    writeFileSync(file, '# mine\nengine: none\n');
    const again = await sb.cli(['config', 'init', file]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`${file} exists; use --force`);
    expect(readFileSync(file, 'utf8')).toBe('# mine\nengine: none\n');
    const forced = await sb.cli(['config', 'init', '--force', file]);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(text);
  });

  it('config init writes where --config / $APISCP_BACKUP_CONFIG point, even though that file does not exist yet', async () => {
    const viaFlag = join(sb.root, 'etc/flag/config.yaml');
    const r1 = await sb.cli(['--config', viaFlag, 'config', 'init'], { withConfig: false });
    expect(r1.exitCode, r1.stderr).toBe(0);
    expect(existsSync(viaFlag)).toBe(true);
    const viaEnv = join(sb.root, 'etc/env/config.yaml');
    const r2 = await sb.cli(['config', 'init'], { withConfig: false, env: { APISCP_BACKUP_CONFIG: viaEnv } });
    expect(r2.exitCode, r2.stderr).toBe(0);
    expect(existsSync(viaEnv)).toBe(true);
  });

  it('an invalid config file can be replaced with config init --force', async () => {
    writeRaw('dumps: [\n');
    const r = await sb.cli(['config', 'init', '--force']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await sb.cli(['config', 'validate'])).exitCode).toBe(0);
  });

  it('--config wins over $APISCP_BACKUP_CONFIG, which wins over the default', async () => {
    const a = join(sb.root, 'a.yaml');
    const b = join(sb.root, 'b.yaml');
    writeFileSync(a, `paths:\n  root: ${sb.root}\ndumps:\n  keep: 5\n`);
    writeFileSync(b, `paths:\n  root: ${sb.root}\ndumps:\n  keep: 7\n`);
    const keepOf = async (args: string[], env: Record<string, string | undefined>): Promise<number> => {
      const r = await sb.cli(['--json', ...args, 'config', 'print'], { withConfig: false, env });
      expect(r.exitCode, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { dumps: { keep: number } }).dumps.keep;
    };
    expect(await keepOf([], { APISCP_BACKUP_CONFIG: a })).toBe(5);
    expect(await keepOf(['--config', b], { APISCP_BACKUP_CONFIG: a })).toBe(7);
    // A named file that does not exist is an error, not a silent fallback to defaults.
    const r = await sb.cli(['config', 'print'], { withConfig: false, env: { APISCP_BACKUP_CONFIG: join(sb.root, 'missing.yaml') } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`${join(sb.root, 'missing.yaml')}: no such file`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('scope commands through the CLI and the stand-in', () => {
  it('status / disable / restore round trip', async () => {
    const sb = await sandbox();
    const st = await sb.cli(['scope', 'status']);
    expect(st.exitCode, st.stderr).toBe(0);
    expect(st.stdout).toContain(`${EXPORT_SCOPE}: on`);

    const off = await sb.cli(['scope', 'disable']);
    expect(off.exitCode, off.stderr).toBe(0);
    expect(sb.readPanelState().scopes?.[EXPORT_SCOPE]).toBe(false);
    const st2 = await sb.cli(['--json', 'scope', 'status']);
    expect(JSON.parse(st2.stdout)).toMatchObject({ scope: EXPORT_SCOPE, enabled: false, record: { previous: true } });

    const back = await sb.cli(['scope', 'restore']);
    expect(back.exitCode, back.stderr).toBe(0);
    expect(back.stdout).toContain('restored to on');
    expect(sb.readPanelState().scopes?.[EXPORT_SCOPE]).toBe(true);
    const again = await sb.cli(['scope', 'restore']);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toContain('no recorded value');
  });

  it('a cpcmd error block → exit 4 with the ERROR text', async () => {
    const sb = await sandbox({ scopes: {} }); // a panel without this scope
    const r = await sb.cli(['scope', 'status']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`ERROR: Unknown admin setting \`${EXPORT_SCOPE}'`);
  });

  it('a missing cpcmd → exit 4 naming it', async () => {
    const sb = await sandbox();
    const gone = join(sb.root, 'no/such/cpcmd');
    const r = await sb.cli(['scope', 'disable'], { env: { CPCMD: gone } });
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`cpcmd not found or not executable: ${gone}`);
    const none = await sb.cli(['scope', 'status'], { env: { CPCMD: undefined, PATH: '/usr/bin:/bin' } });
    expect(none.exitCode).toBe(4);
    expect(none.stderr).toContain('no ApisCP panel');
  });

  it('panel disabled → exit 4 "no ApisCP panel"', async () => {
    const sb = await sandbox({ config: { panel: { enabled: false } } });
    const r = await sb.cli(['scope', 'status']);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain('there is no ApisCP panel on this host: panel.enabled is false');
  });
});

// ---------------------------------------------------------------------------------------------

describe('faults on the shared servers leave the previous run intact', () => {
  async function withBaseline(options: Parameters<typeof sandbox>[0] = {}): Promise<{ sb: Sandbox; before: ReturnType<typeof snapshot> }> {
    const sb = await sandbox(options);
    const r = await sb.cli(['dump']);
    expect(r, r.stderr).toMatchObject({ exitCode: 0, stderr: '' });
    const before = snapshot(sb);
    expect(before.latest).toBeDefined();
    expect(Object.keys(before.files).length).toBeGreaterThan(5);
    return { sb, before };
  }

  it('MariaDB stopped before the dump: exit 1, the summary names mysql, PostgreSQL still dumped', async () => {
    const { sb, before } = await withBaseline();
    await servers.mariadb.stop();
    try {
      const r = await sb.cli(['dump']);
      expect(r.exitCode).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/apiscp-backup FAILED/);
      // The client's own words make it into the one-line summary, not its option list.
      expect(r.stderr).toContain(`mysql: cannot connect to the server at ${servers.mariadb.socket} as root: ERROR 2002`);
      expect(leftovers(sb)).toEqual([]);
      expectIntact(sb, before);
      const failedRun = sb.runDirs().find((n) => n !== before.latest)!;
      const m = sb.manifest(failedRun);
      expect(m.status).toBe('failed');
      expect(m.entries.find((e) => e.kind === 'postgresql' && e.database === 'a_pg')).toMatchObject({ status: 'ok' });
      expect(status(sb).status).toBe('failed');
    } finally {
      await servers.mariadb.start();
    }
  });

  it('a view over a dropped table: exit 1 naming the database; the others are dumped; the run is failed', async () => {
    const { sb, before } = await withBaseline();
    await servers.mariadb.sql('CREATE DATABASE c_broken; USE c_broken; CREATE TABLE gone (id INT); CREATE VIEW v AS SELECT id FROM gone; DROP TABLE gone;');
    try {
      const r = await sb.cli(['dump']);
      expect(r.exitCode).toBe(1);
      // The cause survives the summary's one-line cut (the dump tool's argv used to fill it).
      expect(r.stderr).toMatch(/mysql _server\/c_broken: mariadb-dump: exited with 2: .*View 'c_broken'?\.'?v'? references invalid table/);
      expectIntact(sb, before);
      expect(leftovers(sb)).toEqual([]);
      const failedRun = sb.runDirs().find((n) => n !== before.latest)!;
      const m = sb.manifest(failedRun);
      expect(m.status).toBe('failed');
      expect(m.entries.filter((e) => e.status === 'failed').map((e) => e.database)).toEqual(['c_broken']);
      for (const db of ['a_wp', 'b_shop', 'orphan', 'a_pg', 'orphanpg']) {
        const e = m.entries.find((x) => x.database === db);
        expect(e?.status, db).toBe('ok');
        expect(sha256(join(sb.dumpsDir, failedRun, e!.path!))).toBe(e!.sha256);
      }
      expect(existsSync(join(sb.dumpsDir, failedRun, '_server/mysql/c_broken.sql.zst'))).toBe(false);
      const s = status(sb);
      expect(s.status).toBe('failed');
      expect(s.problems.join('\n')).toContain('c_broken');
    } finally {
      await servers.mariadb.sql('DROP DATABASE c_broken');
    }
  });

  it('the dump dir read-only (read-only bind mount): exit 1, previous run intact', async () => {
    const { sb, before } = await withBaseline();
    await mount(['--bind', sb.dumpsDir, sb.dumpsDir]);
    try {
      await mount(['-o', 'remount,bind,ro', sb.dumpsDir]);
      const r = await sb.cli(['dump']);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`cannot write the dump directory ${sb.dumpsDir}`);
      expect(r.stderr).toMatch(/EROFS|read-only/);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    } finally {
      await umount(sb.dumpsDir);
    }
    expectIntact(sb, before);
    expect(sb.runDirs()).toEqual([before.latest]);
    expect(leftovers(sb)).toEqual([]);
  });

  it('the dump dir full (a tiny tmpfs): exit 1, previous run intact, no partial file', async () => {
    const sb = await sandbox();
    mkdirSync(sb.dumpsDir, { recursive: true });
    await mount(['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', sb.dumpsDir]);
    try {
      const r0 = await sb.cli(['dump']);
      expect(r0, r0.stderr).toMatchObject({ exitCode: 0, stderr: '' });
      const before = snapshot(sb);
      // Fill the filesystem to the last byte.
      await execa('dd', ['if=/dev/zero', `of=${join(sb.dumpsDir, 'filler')}`, 'bs=4k'], { reject: false });
      const r = await sb.cli(['dump']);
      expect(r.exitCode, r.stderr).toBe(1);
      // The space check sees it before anything is written (a run that does start writing and
      // meets ENOSPC is reported the same way, by the dump that failed).
      expect(r.stderr).toMatch(/ENOSPC|No space left|not enough free space/);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expectIntact(sb, before);
      expect(leftovers(sb)).toEqual([]);
      // The failure is recorded, so `status` (and the watchdog) do not keep reporting the old run.
      const state = JSON.parse(readFileSync(sb.statusFile, 'utf8')) as { status: string; problems: string[] };
      expect(state.status).toBe('failed');
      expect(state.problems.join('\n')).toMatch(/ENOSPC|No space left|not enough free space/);
      expect((await sb.cli(['status'])).exitCode).toBe(2); // Nagios CRITICAL
      expect(sb.runDirs()).toEqual([before.latest]);
    } finally {
      await umount(sb.dumpsDir);
    }
  });

  it('a second concurrent run exits 3 after lock.wait, naming the holder pid', async () => {
    // The stand-in answers slowly, so the first run holds the lock for a few seconds.
    const sb = await sandbox({ quirks: { delayMs: 1500 }, config: { lock: { wait: '1s' } } });
    const first = sb.spawnCli(['dump']);
    await waitFor('the first run to take the lock', () => existsSync(`${sb.lockPath}.holder.json`), 20_000);
    const started = Date.now();
    const second = await sb.cli(['dump']);
    expect(second.exitCode).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(second.stderr).toContain(`another run holds ${sb.lockPath}: pid ${first.pid} (apiscp-backup dump`);
    const r1 = await first;
    expect(r1.exitCode, String(r1.stderr)).toBe(0);
    expect(sb.runDirs()).toHaveLength(1);
  });

  it('a Bacula pre-backup hook that collides with the nightly dump waits for it, then runs', async () => {
    // anacron's random delay can start the cron run while Bacula's job begins: the second waits.
    const sb = await sandbox({ quirks: { delayMs: 1500 }, scopes: { [EXPORT_SCOPE]: false }, config: { lock: { wait: '60s' } } });
    const first = sb.spawnCli(['dump']);
    await waitFor('the first run to take the lock', () => existsSync(`${sb.lockPath}.holder.json`), 20_000);
    const hook = await sb.cli(['hook', 'pre-backup', '--engine', 'bacula', '--level', 'Full', '--jobid', '7', '--job', 'ApisCP']);
    const r1 = await first;
    expect(r1.exitCode, String(r1.stderr)).toBe(0);
    expect(hook, hook.stderr).toMatchObject({ exitCode: 0, stderr: '' });
    expect(sb.runDirs()).toHaveLength(2);
    const state = JSON.parse(readFileSync(sb.statusFile, 'utf8')) as { level: string; job: { id: string } };
    expect(state).toMatchObject({ level: 'Full', job: { id: '7' } });
  });

  it('a run in the same second as an existing run (fast reruns, clock stepped back) gets its own directory', async () => {
    const sb = await sandbox({ config: { dumps: { keep: 20 }, databases: { postgresql: { enabled: false } }, panel: { enabled: false } } });
    // Someone else's runs for every second around now: the new run id is taken, whatever it is.
    const now = Date.now();
    const taken = Array.from({ length: 12 }, (_, i) => new Date(now + (i - 2) * 1000).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z'));
    for (const id of taken) {
      mkdirSync(join(sb.dumpsDir, id), { recursive: true });
      writeFileSync(join(sb.dumpsDir, id, 'marker'), id);
      const t = new Date().toISOString();
      writeFileSync(join(sb.dumpsDir, id, 'manifest.json'), JSON.stringify({ version: 1, runId: id, host: 'other', tool: 'apiscp-backup', startedAt: t, finishedAt: t, status: 'complete', method: 'native', entries: [] }));
    }
    const r = await sb.cli(['dump']);
    expect(r, r.stderr).toMatchObject({ exitCode: 0, stderr: '' });
    const mine = sb.latest()!;
    expect(mine).toMatch(/^\d{8}T\d{6}Z-1$/);
    expect(taken).toContain(mine.replace(/-1$/, ''));
    expect(sb.manifest(mine).status).toBe('complete');
    for (const id of taken) expect(readFileSync(join(sb.dumpsDir, id, 'marker'), 'utf8')).toBe(id);
  });

  it('a stale lock left by a dead pid is taken over at once', async () => {
    const sb = await sandbox({ config: { lock: { wait: '1s' } } });
    const gone = execa('true');
    const dead = gone.pid!;
    await gone;
    mkdirSync(sb.lockPath, { recursive: true });
    writeFileSync(`${sb.lockPath}.holder.json`, JSON.stringify({ pid: dead, host: hostname(), command: 'apiscp-backup dump', started: new Date().toISOString() }));
    const r = await sb.cli(['dump']);
    // Exit 0, and the run-died warning said once (issue 26: a run that died is not silent).
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr.split(`died (pid ${dead}, last phase unknown)`)).toHaveLength(2);
    expect(existsSync(sb.lockPath)).toBe(false);
    expect(existsSync(`${sb.lockPath}.holder.json`)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('credentials and faults during a big dump (dedicated MariaDB)', () => {
  let my: MariadbServer;
  let sb: Sandbox;
  let before: ReturnType<typeof snapshot>;
  const PASSWORD = `Bk-${Math.random().toString(36).slice(2)}-s3cr3t`;
  const BIG = /(^|\/)\.big\.sql\.zst\./;

  beforeAll(async () => {
    my = await startMariadb();
    // ~128 MB of random bytes: the dump (hex, zstd) takes a few seconds.
    await my.sql(`
      CREATE DATABASE big; USE big;
      CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB;
      INSERT INTO t(b) SELECT CONCAT(${Array(64).fill('RANDOM_BYTES(1024)').join(',')}) FROM seq_1_to_2000;
      CREATE DATABASE small1; CREATE TABLE small1.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO small1.t VALUES (1);
      CREATE USER 'backup'@'localhost' IDENTIFIED BY '${PASSWORD}';
      GRANT ALL PRIVILEGES ON *.* TO 'backup'@'localhost';
    `);
    sb = await sandbox({ sites: { site1: { mysql: ['big'] } } });
    const pwFile = join(sb.root, 'etc/apiscp-backup/mysql.password');
    writeFileSync(pwFile, PASSWORD + '\n', { mode: 0o600 });
    sb.writeConfig({
      databases: { mysql: { socket: my.socket, user: 'backup', password_file: pwFile } },
      logging: { level: 'debug' },
    });
  });
  afterAll(async () => {
    await my?.destroy();
  });

  it('the password never shows in ps, log, output, manifest or status; option files are 0600, in memory, and removed', async () => {
    // TMPDIR on a tmpfs is where the option file goes (else /dev/shm: test/foundation/secret-dir.test.ts).
    await mount(['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', sb.tmpDir]);
    try {
      await watchedDump();
    } finally {
      await umount(sb.tmpDir);
    }
  });

  async function watchedDump(): Promise<void> {
    const child = sb.spawnCli(['dump']);
    let done = false;
    void child.finally(() => (done = true));
    const samples: string[] = [];
    const optionFileModes = new Set<string>();
    while (!done) {
      const ps = await execa('ps', ['-eo', 'args'], { reject: false });
      samples.push(String(ps.stdout));
      for (const d of readdirSync(sb.tmpDir).filter((n) => n.startsWith('asb-mysql-'))) {
        try {
          optionFileModes.add(`${(statSync(join(sb.tmpDir, d)).mode & 0o777).toString(8)}/${(statSync(join(sb.tmpDir, d, 'client.cnf')).mode & 0o777).toString(8)}`);
        } catch {
          /* created or removed between readdir and stat */
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    const r = await child;
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stdout) + String(r.stderr)).toBe('');
    // We did watch the dump: mariadb-dump ran with our option file on argv, never the password.
    const dumpLines = samples.flatMap((s) => s.split('\n')).filter((l) => l.includes('mariadb-dump') && l.includes(sb.tmpDir));
    expect(dumpLines.length).toBeGreaterThan(0);
    expect(dumpLines[0]).toMatch(/--defaults-extra-file=\S+\/client\.cnf/);
    for (const s of samples) expect(s).not.toContain(PASSWORD);
    expect([...optionFileModes]).toEqual(['700/600']);
    expect(readdirSync(sb.tmpDir)).toEqual([]);
    const runId = sb.latest()!;
    for (const f of [sb.logFile, sb.statusFile, join(sb.dumpsDir, runId, 'manifest.json')]) {
      expect(readFileSync(f, 'utf8'), f).not.toContain(PASSWORD);
    }
    expect(readFileSync(sb.logFile, 'utf8')).toContain('"level":20'); // debug lines were written
    expect(sb.manifest(runId).entries.find((e) => e.database === 'big')).toMatchObject({ site: 'site1', status: 'ok' });
    before = snapshot(sb);
  }

  it('the compressor killed mid-dump (SIGKILL): exit 1 naming the database, previous run intact', async () => {
    const child = sb.spawnCli(['dump']);
    await waitFor('the big dump to grow', () => growingTemp(sb, BIG, 1 << 20), 60_000);
    // Several dumps run at once; the small ones finish within a second. Wait until the big
    // one's pipeline is all that runs, so the zstd we kill is the big dump's compressor.
    const zstd = await waitFor('the big dump to be the only pipeline left', async () => {
      const kids = await childrenOf(child.pid!);
      const compressors = kids.filter((k) => /zstd -q -c/.test(k.args));
      const dumpers = kids.filter((k) => /mariadb-dump|pg_dump/.test(k.args));
      return compressors.length === 1 && dumpers.length === 1 && dumpers[0]!.args.endsWith(' -- big') && growingTemp(sb, BIG, 1 << 20) ? compressors[0]!.pid : undefined;
    }, 60_000);
    process.kill(zstd, 'SIGKILL');
    const r = await child;
    expect(r.exitCode).toBe(1);
    // The root cause, not mariadb-dump's "Got errno 32 on write" that followed from it.
    expect(String(r.stderr)).toMatch(/mysql site1\/big: zstd: killed by SIGKILL/);
    expect(String(r.stderr)).not.toMatch(/postgresql .*killed/);
    expectIntact(sb, before);
    expect(leftovers(sb)).toEqual([]);
    const failed = sb.runDirs().at(-1)!;
    expect(sb.manifest(failed).status).toBe('failed');
  });

  it('SIGTERM during a dump: exit 143, no child left, .inprogress removed, lock released', async () => {
    const child = sb.spawnCli(['dump']);
    await waitFor('the big dump to grow', () => growingTemp(sb, BIG, 1 << 20), 60_000);
    const kids = await childrenOf(child.pid!);
    expect(kids.some((k) => k.args.includes('mariadb-dump'))).toBe(true);
    expect(kids.some((k) => k.args.includes('zstd'))).toBe(true);
    const runsBefore = sb.runDirs();
    child.kill('SIGTERM');
    const r = await child;
    expect(r.exitCode).toBe(143);
    expect(String(r.stderr)).toContain('interrupted by SIGTERM');
    for (const k of kids) expect(alive(k), k.args).toBe(false);
    const ours = await execa('pgrep', ['-f', `mariadb-dump --defaults-extra-file=${sb.tmpDir}`], { reject: false });
    expect(ours.stdout.trim()).toBe('');
    expect(sb.runDirs()).toEqual(runsBefore.filter((n) => !n.endsWith('.inprogress')));
    expect(leftovers(sb)).toEqual([]);
    expect(existsSync(sb.lockPath)).toBe(false);
    expectIntact(sb, before);
    // The lock is free: the next run goes ahead at once and succeeds.
    const next = await sb.cli(['dump'], { env: {} });
    expect(next.exitCode, next.stderr).toBe(0);
    before = snapshot(sb);
  });

  it('MariaDB killed during the dump: exit 1 naming the database, previous run intact', async () => {
    const child = sb.spawnCli(['dump']);
    await waitFor('the big dump to grow', () => growingTemp(sb, BIG, 1 << 20), 60_000);
    await my.kill();
    const r = await child;
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toMatch(/mysql site1\/big: mariadb-dump: exited with \d+: .*(Lost connection|2013|gone away)/);
    expectIntact(sb, before);
    expect(leftovers(sb)).toEqual([]);
    expect(status(sb).status).toBe('failed');
  });
});

// ---------------------------------------------------------------------------------------------

describe('retention (dumps.keep: 2)', () => {
  it('keeps 2 complete runs; a failed run newer than the newest complete one is kept, older failed ones removed', async () => {
    const sb = await sandbox({ config: { dumps: { keep: 2 } } });
    const dump = async (expected: number): Promise<string> => {
      const r = await sb.cli(['dump']);
      expect(r.exitCode, r.stderr).toBe(expected);
      const newest = sb.runDirs().at(-1)!;
      // `latest` always names an existing complete run.
      const latest = sb.latest()!;
      expect(sb.manifest(latest).status).toBe('complete');
      return newest;
    };
    const ok: string[] = [];
    for (let i = 0; i < 4; i++) ok.push(await dump(0));
    expect(new Set(ok).size).toBe(4); // every run has its own directory
    expect(sb.runDirs()).toEqual(ok.slice(2));
    expect(sb.latest()).toBe(ok[3]);

    await servers.mariadb.sql('CREATE DATABASE c_broken; USE c_broken; CREATE TABLE gone (id INT); CREATE VIEW v AS SELECT id FROM gone; DROP TABLE gone;');
    let failed: string[];
    try {
      failed = [await dump(1), await dump(1)];
    } finally {
      await servers.mariadb.sql('DROP DATABASE c_broken');
    }
    // Failed runs newer than the newest complete one hold the only copies of today's good dumps.
    expect(sb.runDirs()).toEqual([...ok.slice(2), ...failed]);
    expect(sb.latest()).toBe(ok[3]);

    const last = await dump(0);
    expect(sb.runDirs()).toEqual([ok[3], last]);
    expect(sb.latest()).toBe(last);
    expect(leftovers(sb)).toEqual([]);
  });
});

describe("site owners' own scheduled exports (panel.owner_exports)", () => {
  const calls = (sb: Sandbox): { tool: string; argv: string[]; event?: string; time: string; written?: string[] }[] =>
    readFileSync(sb.panelLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

  it('after our dumps, backup_dbs.php runs WITHOUT --force: only the due exports appear, consistent with this run', async () => {
    const sb = await sandbox({ sites: { site1: { mysql: ['a_wp'], pgsql: ['a_pg'], due: ['a_wp'] }, site2: { mysql: ['b_shop'], due: [] } } });
    const r = await sb.cli(['dump']);
    expect([r.exitCode, r.stderr]).toEqual([0, '']);
    const runs = calls(sb).filter((c) => c.tool === 'backup_dbs.php');
    expect(runs.find((c) => c.event === 'start')?.argv).toEqual([]);
    const done = runs.find((c) => c.event === 'done')!;
    expect(done.written!.map((f) => relative(join(sb.root, 'home/virtual'), f))).toEqual([expect.stringMatching(/^site1\/shadow\/home\/admin1\/mysql_backups\/a_wp-\d{8}\.sql$/)]);
    // Ours first: the manifest was complete before the panel's script started.
    const manifest = sb.manifest(sb.latest()!);
    expect(Date.parse(runs.find((c) => c.event === 'start')!.time)).toBeGreaterThanOrEqual(Date.parse(manifest.finishedAt));
    expect(JSON.parse(readFileSync(sb.statusFile, 'utf8'))).toMatchObject({ status: 'ok', problems: [] });
  });

  it("the panel's error block with exit 0 and an empty export are warnings, not failures", async () => {
    const sb = await sandbox({ quirks: { backupDbsErrorBlock: 'mysql export of a_wp failed: Lost connection', backupDbsEmpty: ['b_shop'] } });
    const r = await sb.cli(['dump']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/^apiscp-backup finished with warnings/);
    expect(r.stderr).toContain("site owners' scheduled database exports reported an error: ERROR: mysql export of a_wp failed: Lost connection");
    expect(r.stderr).toMatch(/site owners' scheduled export .*b_shop-\d{8}\.sql is empty/);
    const st = JSON.parse(readFileSync(sb.statusFile, 'utf8')) as RunState;
    expect(st.status).toBe('warning');
    expect(st.warnings?.map((w) => w.code)).toEqual(['owner-exports', 'owner-exports']);
    expect(st.dumps?.failed).toBe(0);
    const status = await sb.cli(['status']);
    expect(status.stdout).toMatch(/^WARNING: site owners' scheduled database exports reported an error: .*; site owners' scheduled export .*b_shop-\d{8}\.sql is empty/);
  });

  it('panel.owner_exports: false, or databases.method both (the panel exports with --force itself): no owners\' run', async () => {
    const off = await sandbox({ config: { panel: { owner_exports: false } } });
    expect((await off.cli(['dump'])).exitCode).toBe(0);
    expect(calls(off).filter((c) => c.tool === 'backup_dbs.php')).toEqual([]);
    const both = await sandbox({ config: { databases: { method: 'both' } } });
    expect((await both.cli(['dump'])).exitCode).toBe(0);
    expect(calls(both).filter((c) => c.tool === 'backup_dbs.php' && c.event === 'start').map((c) => c.argv)).toEqual([['--force']]);
  });
});
