import { chmodSync, mkdtempSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { memoryLogger } from '../../../lib/log.js';
import type { Manifest } from '../../../lib/model/manifest.js';
import { osUser } from '../../../lib/os-user.js';
import type { MariadbServer } from '../../../lib/throwaway/mariadb.js';
import { ThrowawayServers, VERIFY_OS_USER } from '../../../lib/verify/servers.js';
import { dumpEntry, replaceDump, zstdBytes, zstdText } from '../../helpers/dump-files.js';
import { assertBuilt, liveAndFresh, rmrf, type LiveAndFresh } from '../../helpers/e2e.js';

// A MariaDB database's own properties (character set, collation) through dump, restore and
// verify, and `verify` loading the way `restore db` does (DEFINER accounts from the users export
// first), into a throwaway server that runs as an unprivileged OS user of its own.

const base = mkdtempSync(join(tmpdir(), 'fid-'));
chmodSync(base, 0o755); // verify.work_dir: the throwaway server's OS user must reach its directory below
let live: MariadbServer;
let fresh: MariadbServer;
let toLive: LiveAndFresh['toLive'];
let toFresh: LiveAndFresh['toFresh'];
let servers: LiveAndFresh | undefined;
let dumpsDir: string;
let stateDir: string;

const SEED = `
CREATE DATABASE site1_wp CHARACTER SET latin1 COLLATE latin1_german2_ci;
USE site1_wp;
CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO t VALUES (1, 'Ärger'), (2, 'Aerger');
CREATE FUNCTION same(a VARCHAR(10)) RETURNS INT DETERMINISTIC RETURN a = 'ae';
CREATE USER 'site1_u'@'localhost' IDENTIFIED BY 'pw';
GRANT ALL ON site1_wp.* TO 'site1_u'@'localhost';
CREATE DEFINER='site1_u'@'localhost' SQL SECURITY DEFINER VIEW v1 AS SELECT id FROM t;
CREATE DEFINER='site1_u'@'localhost' SQL SECURITY DEFINER VIEW v2 AS SELECT id FROM v1;
CREATE DATABASE site1_alt CHARACTER SET latin1 COLLATE latin1_german2_ci;
USE site1_alt;
CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE FUNCTION same(a VARCHAR(10)) RETURNS INT DETERMINISTIC RETURN a = 'ae';
ALTER DATABASE site1_alt COLLATE latin1_swedish_ci;
`;

beforeAll(async () => {
  assertBuilt();
  servers = await liveAndFresh(base, SEED);
  ({ live, fresh, toLive, toFresh, dumpsDir, stateDir } = servers);
});

afterAll(async () => {
  await servers?.destroy();
  rmrf(base);
});

const schemaOf = async (server: MariadbServer, db: string): Promise<string> => (await server.sql(`SHOW CREATE DATABASE \`${db}\``)).trim().replaceAll(db, 'DB');
const routineOf = async (server: MariadbServer, db: string): Promise<string> =>
  (await server.sql(`SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = '${db}' AND SPECIFIC_NAME = 'same'; SELECT \`${db}\`.same('ä'), \`${db}\`.same('ae')`)).trim();

const runDir = (): string => join(dumpsDir, readlinkSync(join(dumpsDir, 'latest')));
const manifestFile = (): string => join(runDir(), 'manifest.json');
const verifyState = (): { databases: Record<string, { outcome: string; problems: string[] }> } => JSON.parse(readFileSync(join(stateDir, 'verify.json'), 'utf8'));
const outcomeOf = (db: string): { outcome: string; problems: string[] } => Object.entries(verifyState().databases).find(([k]) => k.includes(db))![1];

describe('the database\'s character set and collation', () => {
  test('restore db on a fresh server: SHOW CREATE DATABASE and the routine\'s parameter as on the live server', async () => {
    for (const db of ['site1_wp', 'site1_alt']) {
      const r = await toFresh(['restore', 'db', db]);
      expect(r.code, r.stderr).toBe(0);
      expect(await schemaOf(fresh, db), db).toBe(await schemaOf(live, db));
      expect(await routineOf(fresh, db), db).toBe(await routineOf(live, db));
    }
  });

  test('a dump from before they were recorded: read from the dump\'s ALTER DATABASE lines', async () => {
    const original = readFileSync(manifestFile(), 'utf8');
    const manifest = JSON.parse(original) as Manifest;
    const entries = manifest.entries.map((e) => (e.details ? { ...e, details: Object.fromEntries(Object.entries(e.details).filter(([k]) => k !== 'charset' && k !== 'collation')) } : e));
    writeFileSync(manifestFile(), JSON.stringify({ ...manifest, entries }, null, 2));
    try {
      const r = await toFresh(['restore', 'db', 'site1_alt', '--into', 'old_alt']);
      expect(r.code, r.stderr).toBe(0);
      expect(await schemaOf(fresh, 'old_alt')).toBe(await schemaOf(live, 'site1_alt'));
      expect(await routineOf(fresh, 'old_alt')).toBe((await routineOf(live, 'site1_alt')));
    } finally {
      writeFileSync(manifestFile(), original);
    }
  });
});

describe('verify', () => {
  test('a view over a view whose DEFINER the verify server lacks: loads like restore db (was ERROR 1449, exit 9)', async () => {
    const r = await toLive(['verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(outcomeOf('site1_wp')).toMatchObject({ outcome: 'ok', problems: [] });
    expect(outcomeOf('site1_alt')).toMatchObject({ outcome: 'ok', problems: [] });
  });

  test('a load that gets the collation wrong is a failure: verify compares the database\'s own properties', async () => {
    const original = readFileSync(manifestFile(), 'utf8');
    const manifest = JSON.parse(original) as Manifest;
    // The restore's input says another collation than the server had: what a restore bug would do.
    const entries = manifest.entries.map((e) => (e.database === 'site1_wp' ? { ...e, details: { ...e.details, collation: 'latin1_swedish_ci' } } : e));
    writeFileSync(manifestFile(), JSON.stringify({ ...manifest, entries }, null, 2));
    try {
      const r = await toLive(['verify']);
      expect(r.code).toBe(9);
      expect(outcomeOf('site1_wp').outcome).toBe('failed');
      expect(outcomeOf('site1_wp').problems.join('\n')).toContain("'latin1 / latin1_german2_ci'");
    } finally {
      writeFileSync(manifestFile(), original);
    }
  });

  test('its throwaway MariaDB runs as an unprivileged OS user, in a private directory, files and plugins confined there', async () => {
    const servers = new ThrowawayServers(base, memoryLogger());
    try {
      const server = await servers.serverFor('mysql', live.version);
      const user = osUser(VERIFY_OS_USER)!;
      expect(user.uid).toBeGreaterThan(0);
      const pid = readFileSync((await server.sql('SELECT @@pid_file')).trim(), 'utf8').trim();
      expect(pid).toMatch(/^\d+$/);
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(new RegExp(`^Uid:\\s+${user.uid}\\s`, 'm'));
      const dir = statSync(server.baseDir);
      expect(dir.uid).toBe(user.uid);
      expect(dir.mode & 0o777).toBe(0o700);
      expect((await server.sql('SELECT @@secure_file_priv, @@local_infile, @@event_scheduler')).trim()).toBe(`${join(server.baseDir, 'files')}/\t0\tOFF`);
      // The live server's data and a root-only file are out of its reach.
      expect((await server.sql(`SELECT LOAD_FILE('${join(live.dataDir, 'ibdata1')}') IS NULL, LOAD_FILE('/etc/shadow') IS NULL`)).trim()).toBe('1\t1');
      // Only authentication plugins can be loaded: not an engine that connects elsewhere.
      await server.sql("INSTALL SONAME 'auth_ed25519'");
      await expect(server.sql("INSTALL SONAME 'ha_federatedx'")).rejects.toThrow(/ha_federatedx/);
      expect(readFileSync('/etc/passwd', 'utf8')).toMatch(new RegExp(`^${VERIFY_OS_USER}:[^:]*:\\d+:\\d+:[^:]*:/nonexistent:/(usr/)?s?bin/(nologin|false)$`, 'm'));
    } finally {
      await servers.destroy();
    }
  });
});

describe('a --force restore that fails', () => {
  test('loads the safety dump back into a database with the replaced one\'s own character set and collation', async () => {
    const before = await schemaOf(live, 'site1_wp');
    const routine = await routineOf(live, 'site1_wp');
    const rows = await live.sql('CHECKSUM TABLE site1_wp.t EXTENDED');
    const entry = dumpEntry(runDir(), 'site1_wp');
    const file = join(runDir(), entry.path!);
    const good = readFileSync(file);
    const damaged = (await zstdText(file)).replace('-- Dump completed', 'THIS IS NOT SQL THE SERVER TAKES;\n-- Dump completed');
    replaceDump(runDir(), 'site1_wp', await zstdBytes(damaged, join(base, 'damaged.sql')), { keepManifestHash: false });
    try {
      const r = await toLive(['restore', 'db', 'site1_wp', '--force']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain('holds its previous content again');
      expect(await schemaOf(live, 'site1_wp')).toBe(before);
      expect(await routineOf(live, 'site1_wp')).toBe(routine);
      expect(await live.sql('CHECKSUM TABLE site1_wp.t EXTENDED')).toBe(rows);
    } finally {
      replaceDump(runDir(), 'site1_wp', good, { keepManifestHash: false });
    }
  });
});
