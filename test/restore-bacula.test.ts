import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBacula, type BaculaHarness } from './harness/bacula.js';
import { assertBuilt, CLI, mysqlFingerprint, NODE, rmrf, startServers, stopServers, type Servers } from './helpers/e2e.js';
import { createRestoreFixture, seedSiteDatabases, type RestoreFixture } from './helpers/restore-fixture.js';

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

const fp = (db: string): Promise<Record<string, string>> => mysqlFingerprint(servers.my, db);

describe('Bacula: list and restore db through bconsole', () => {
  let first: Record<string, string>;
  let second: Record<string, string>;
  let backups: { id: string; time: string; chain: number; level: string; chainIds: string[] }[];

  test('Full, then Incremental: list shows both with their restore chain', async () => {
    first = await fp('site2_db');
    const full = await h.runJob('ApisCP', 'Full');
    expect(full.status, full.log).toBe('T');
    await servers.my.sql(`INSERT INTO \`site2_db\`.items VALUES (1000, 'after the full', NULL)`);
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
    await servers.my.sql(`DELETE FROM \`site2_db\`.items WHERE id = 1000`);
    const refused = await f.cli(['restore', 'db', 'site2_db', '--from', backups[0]!.time]);
    expect(refused.code).toBe(8);
    const forced = await f.cli(['restore', 'db', 'site2_db', '--from', backups[0]!.time, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/Incremental, restore chain 2/);
    expect(forced.stdout).toMatch(/safety dump of the previous content/);
    expect(await fp('site2_db')).toEqual(second);
    await servers.my.sql('DROP DATABASE site2_db_full');
  });
});
