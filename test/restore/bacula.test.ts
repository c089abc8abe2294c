import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBacula, type BaculaHarness } from '../harness/bacula.js';
import { assertBuilt, cli, CLI, mysqlFingerprint, NODE, rmrf, stopServers } from '../helpers/e2e.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import { toolLog } from '../helpers/tool-log.js';
import { createRestoreFixture, seedSiteDatabases, siteFingerprints, type RestoreFixture } from '../helpers/restore-fixture.js';

// Restores through a real Bacula director: `list` reads our job's backups from the catalog with
// their chain (Full + Differential + Incrementals), `restore` marks only the needed paths in
// the restore tree of that chain and waits for the restore job.

const base = mkdtempSync(join(tmpdir(), 'restore-bacula-'));
let servers: Servers;
let h: BaculaHarness;
let f: RestoreFixture;

beforeAll(async () => {
  assertBuilt();
  servers = await startServers();
  await seedSiteDatabases(servers);
  f = await createRestoreFixture(base, 'bacula', servers);
  const fragment = await f.cli(['bacula', 'config', '--node', NODE, '--entry', CLI]);
  expect(fragment.code, fragment.stderr).toBe(0);
  h = await startBacula({ extraDirectorConfig: fragment.stdout });
  const raw = JSON.parse((await import('node:fs')).readFileSync(f.config, 'utf8')) as Record<string, Record<string, unknown>>;
  writeFileSync(f.config, JSON.stringify({ ...raw, bacula: { bconsole_config: h.bconsoleConfigFile } }));
});

afterAll(async () => {
  await h?.stop();
  await stopServers(servers);
  rmrf(base);
});

const fp = (db: string): Promise<Record<string, string>> => mysqlFingerprint(servers.mariadb, db);

describe('Bacula: list and restore db through bconsole', () => {
  let first: Record<string, string>;
  let second: Record<string, string>;
  let backups: { id: string; time: string; chain: number; level: string; chainIds: string[] }[];

  test('Full, then Incremental: list shows both with their restore chain', async () => {
    first = await fp('site2_db');
    const full = await h.runJob('ApisCP', 'Full');
    expect(full.status, full.log).toBe('T');
    await servers.mariadb.sql(`INSERT INTO \`site2_db\`.items VALUES (1000, 'after the full', NULL)`);
    second = await fp('site2_db');
    const inc = await h.runJob('ApisCP', 'Incremental');
    expect(inc.status, inc.log).toBe('T');
    const r = await f.cli(['--json', 'list']);
    expect(r.code, r.stderr).toBe(0);
    backups = (JSON.parse(r.stdout) as { backups: typeof backups }).backups;
    expect(backups.map((b) => [b.id, b.level, b.chain])).toEqual([
      [String(inc.jobId), 'Incremental', 2],
      [String(full.jobId), 'Full', 1],
    ]);
    expect(backups[0]!.chainIds).toEqual([String(full.jobId), String(inc.jobId)]);
  });

  test('restore db from the Full (by JobId) into a new database, and from the chain by date with --force', async () => {
    // Local runs would serve a plain `restore db`: --from a JobId goes to the director.
    const old = await f.cli(['restore', 'db', 'site2_db', '--from', backups[1]!.id, '--into', 'site2_db_full']);
    expect(old.code, old.stderr).toBe(0);
    expect(old.stdout).toMatch(/from Bacula job \d+ .*Full, restore chain 1/);
    expect(await fp('site2_db_full')).toEqual(first);
    await servers.mariadb.sql(`DELETE FROM \`site2_db\`.items WHERE id = 1000`);
    // The refusal without --force is engine-independent (restore.test.ts, every other engine).
    const forced = await f.cli(['restore', 'db', 'site2_db', '--from', backups[0]!.time, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/Incremental, restore chain 2/);
    expect(forced.stdout).toMatch(/safety dump of the previous content/);
    expect(await fp('site2_db')).toEqual(second);
    await servers.mariadb.sql('DROP DATABASE site2_db_full');
  });
});

describe('Bacula: restore files and restore site', () => {
  test('restore files: one ACL\'d file back in place, a directory into --target', async () => {
    const rel = 'home/virtual/site1/shadow/var/www/html/index.html';
    const before = await snapshotTree(f.root, [rel]);
    rmSync(join(f.root, rel));
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/index.html', '--in-place']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/missing\s+1/);
    expect(Object.fromEntries(await snapshotTree(f.root, [rel]))).toEqual(Object.fromEntries(before));
    const target = join(base, 'copy');
    const c = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', target]);
    expect(c.code, c.stderr).toBe(0);
    const deep = f.tree.included.filter((p) => p.startsWith('home/virtual/site1/shadow/var/www/html/deep'));
    const copied = await snapshotTree(join(target, 'site1'), deep.map((p) => p.slice('home/virtual/site1/'.length)));
    const orig = await snapshotTree(join(f.tree.home, 'site1'), deep.map((p) => p.slice('home/virtual/site1/'.length)));
    expect(Object.fromEntries(copied)).toEqual(Object.fromEntries(orig));
    const unknown = await f.cli(['restore', 'site', 'site9']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown site site9/);
  });

  test('site2 broken, `restore site site2 --in-place --exact`: back as at the last job', async () => {
    const rels = (re: RegExp): string[] => f.tree.included.filter((p) => re.test(p));
    const site2 = rels(/^home\/virtual\/site2\//);
    const [before2, beforeOthers] = await Promise.all([snapshotTree(f.root, site2), snapshotTree(f.root, rels(/^home\/virtual\/site[13]\//))]);
    const inc = await h.runJob('ApisCP', 'Incremental');
    expect(inc.status, inc.log).toBe('T');
    const dbs = await siteFingerprints(servers, 'site2');
    const html = join(f.tree.home, 'site2/shadow/var/www/html');
    for (const gone of ['index.html', 'logo.bin', 'deep/removed.txt']) rmSync(join(html, gone));
    writeFileSync(join(html, 'shell.php'), '<?php');
    await servers.mariadb.sql('DROP DATABASE site2_db');
    // Every bconsole run logged with the commands it read (test/helpers/tool-log.ts): one restore job for everything.
    const tools = toolLog(base, ['bconsole'], f.env.PATH);
    const r = await cli(['--config', f.config, 'restore', 'site', 'site2', '--in-place', '--exact'], { env: { ...f.env, PATH: tools.path } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/restore chain 3/);
    const jobs = tools.calls().filter((c) => c.input.some((l) => l.startsWith('restore jobid=')));
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.input.filter((l) => l.startsWith('mark '))).toEqual(expect.arrayContaining(['mark "shadow"', 'mark "info"', 'mark "latest"', 'mark "manifest.json"', 'mark "site2"']));
    expect(Object.fromEntries(await snapshotTree(f.root, site2))).toEqual(Object.fromEntries(before2));
    expect(Object.fromEntries(await snapshotTree(f.root, rels(/^home\/virtual\/site[13]\//)))).toEqual(Object.fromEntries(beforeOthers));
    expect(existsSync(join(html, 'shell.php'))).toBe(false);
    expect(await siteFingerprints(servers, 'site2')).toEqual(dbs);
  });
});

describe('Bacula: an ACL that names a user', () => {
  // The file daemon stores ACLs as acl_to_text(3) writes them: a uid that has a name on this host
  // is stored by name, and a name that is gone at restore time cannot be set again. Bacula counts
  // that as a warning and ends the job "OK"; the restore must not.
  test('the user is deleted before the restore: restore files fails and names the ACL, nothing is put in place', async () => {
    const name = `asbacl${process.pid}`.slice(0, 30);
    const rel = '/var/www/html/name with space.txt';
    const file = join(f.tree.home, 'site3/shadow' + rel);
    await run(cmd('useradd', ['--system', '-M', '-N', '-s', '/usr/sbin/nologin', name]));
    try {
      await run(cmd('setfacl', ['-m', `user:${name}:r--`, file]));
      const inc = await h.runJob('ApisCP', 'Incremental');
      expect(inc.status, inc.log).toBe('T');
    } finally {
      await run(cmd('userdel', [name]), { exitClass: exitClasses({ ok: [6] }) });
    }
    const target = join(base, 'acl-gone');
    const r = await f.cli(['restore', 'files', 'site3', rel, '--target', target]);
    expect(r.code, r.stdout + r.stderr).toBe(8);
    expect(r.stderr).toMatch(/ACL/);
    expect(r.stderr).toMatch(/name with space\.txt/);
    expect(existsSync(join(target, 'site3'))).toBe(false);
  });
});
