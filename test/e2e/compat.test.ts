import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { assertBuilt, cli, mysqlFingerprint, pgFingerprint, REPO, stopServers, writeConfig, type CliResult } from '../helpers/e2e.js';
import { COMPAT_ROOT, SITE_PATHS } from '../fixtures/compat/layout.js';

/**
 * Backups already taken stay restorable: test/fixtures/compat holds a run directory and a restic
 * repository made by an older commit (made-by.json names it; test/fixtures/compat/make.ts made
 * them). Today's code lists, verifies and restores them onto servers that never had them, and
 * what comes back is compared with the ORIGINAL databases' and files' fingerprints, taken when
 * the fixture was made.
 */

const FIXTURE = join(REPO, 'test/fixtures/compat');
const madeBy = JSON.parse(readFileSync(join(FIXTURE, 'made-by.json'), 'utf8')) as {
  commit: string;
  runId: string;
  site: string;
  fingerprints: Record<string, Record<string, string>>;
  files: Record<string, unknown>;
};

let servers: Servers;
let scratch: string;
let config: string;
const backup = (args: readonly string[]): Promise<CliResult> => cli(['--config', config, ...args]);
const expectOk = (r: CliResult): void => expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);

beforeAll(async () => {
  assertBuilt();
  rmSync(COMPAT_ROOT, { recursive: true, force: true });
  const dumps = join(COMPAT_ROOT, 'var/backup/apiscp-backup');
  mkdirSync(dumps, { recursive: true, mode: 0o700 });
  cpSync(join(FIXTURE, 'run', madeBy.runId), join(dumps, madeBy.runId), { recursive: true });
  symlinkSync(madeBy.runId, join(dumps, 'latest'));
  cpSync(join(FIXTURE, 'restic'), join(COMPAT_ROOT, 'restic'), { recursive: true });
  chmodSync(join(COMPAT_ROOT, 'restic/secret'), 0o600); // git keeps no modes
  // The site exists again (a new server, the panel recreated it), its files are gone.
  mkdirSync(join(COMPAT_ROOT, 'home/virtual', madeBy.site, 'shadow'), { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), 'asb-compat-'));
  chmodSync(scratch, 0o755); // verify's throwaway servers run as their own OS user
  servers = await startServers();
  config = writeConfig(join(COMPAT_ROOT, 'etc/apiscp-backup/config.yaml'), {
    root: COMPAT_ROOT,
    servers,
    engine: 'restic',
    extra: {
      restic: { repository: join(COMPAT_ROOT, 'restic/repo'), password_file: join(COMPAT_ROOT, 'restic/secret'), keep: { last: 100 } },
      verify: { schedule: 'off', work_dir: scratch },
    },
  });
}, 240_000);

afterAll(async () => {
  await stopServers(servers);
  rmSync(scratch, { recursive: true, force: true });
  rmSync(COMPAT_ROOT, { recursive: true, force: true });
});

describe(`backups made by ${madeBy.commit.slice(0, 10)} stay restorable`, () => {
  it('list shows the run and the restic snapshot; verify loads and compares every dump of it', async () => {
    const snapshots = JSON.parse((await run(cmd('restic', ['snapshots', '--json'], { env: { RESTIC_REPOSITORY: join(COMPAT_ROOT, 'restic/repo'), RESTIC_PASSWORD_FILE: join(COMPAT_ROOT, 'restic/secret') } }))).stdout) as { short_id: string }[];
    expect(snapshots).toHaveLength(1);
    const list = await backup(['list']);
    expectOk(list);
    expect(list.stdout).toContain(madeBy.runId);
    expect(list.stdout).toContain(snapshots[0]!.short_id);
    const verify = await backup(['verify', '--run', madeBy.runId, '--all']);
    expectOk(verify);
  });

  it('restore db from the local run: MariaDB with its accounts, PostgreSQL with its owners, as they were', async () => {
    expectOk(await backup(['restore', 'db', 'site1_shop']));
    expect(await mysqlFingerprint(servers.mariadb, 'site1_shop')).toEqual(madeBy.fingerprints['mysql:site1_shop']);
    expect(await servers.mariadb.sql('SELECT COUNT(*) FROM site1_shop.bulk')).toMatch(/^40000\s*$/);
    const grants = await servers.mariadb.sql("SHOW GRANTS FOR 'site1_app'@'localhost'");
    expect(grants).toMatch(/GRANT SELECT, INSERT ON `site1_shop`\.\* TO `site1_app`@`localhost`/);
    expect(grants).toMatch(/GRANT UPDATE \(`name`\) ON `site1_shop`\.`items` TO `site1_app`@`localhost`/);
    expectOk(await backup(['restore', 'db', 'site2_blog']));
    expect(await pgFingerprint(servers.postgres, 'site2_blog')).toEqual(madeBy.fingerprints['postgresql:site2_blog']);
    expect((await servers.postgres.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'owned'", 'site2_blog')).trim()).toBe('site2_owner');
  });

  it('restore db from the engine (the local run gone) and restore files: the originals come back', async () => {
    rmSync(join(COMPAT_ROOT, 'var/backup/apiscp-backup', madeBy.runId), { recursive: true });
    rmSync(join(COMPAT_ROOT, 'var/backup/apiscp-backup/latest'));
    expectOk(await backup(['restore', 'db', 'dé_日本', '--from', madeBy.runId.slice(0, 8).replace(/(\d{4})(\d\d)(\d\d)/, '$1-$2-$3')]));
    expect(await mysqlFingerprint(servers.mariadb, 'dé_日本')).toEqual(madeBy.fingerprints['mysql:dé_日本']);
    expectOk(await backup(['restore', 'db', 'ünï_pg', '--from', madeBy.runId.slice(0, 8).replace(/(\d{4})(\d\d)(\d\d)/, '$1-$2-$3')]));
    expect(await pgFingerprint(servers.postgres, 'ünï_pg')).toEqual(madeBy.fingerprints['postgresql:ünï_pg']);
    const target = join(scratch, 'files');
    expectOk(await backup(['restore', 'files', madeBy.site, ...SITE_PATHS, '--target', target]));
    const restored = await snapshotTree(join(target, madeBy.site, 'shadow'), SITE_PATHS.map((p) => p.replace(/^\//, '')));
    expect(Object.fromEntries(restored)).toEqual(madeBy.files);
  });
});
