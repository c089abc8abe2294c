import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Manifest } from '../../../lib/model/manifest.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { MariadbServer } from '../../../lib/throwaway/mariadb.js';
import { dumpEntry, replaceDump, zstdBytes, zstdText } from '../../helpers/dump-files.js';
import { assertBuilt, liveAndFresh, rmrf, type LiveAndFresh } from '../../helpers/e2e.js';

// What `restore db` does to a MariaDB database's own properties and to accounts, through the
// BUILT CLI against real servers: `live` is the dumped server, `fresh` a new one (the disaster).
// Everything is compared with what the live server itself says (SHOW CREATE DATABASE, SHOW CREATE
// USER, SHOW GRANTS, information_schema), never with what the restore printed.

const base = mkdtempSync(join(tmpdir(), 'acc-'));
chmodSync(base, 0o755); // verify.work_dir: the throwaway server's OS user must reach its directory below
let live: MariadbServer;
let fresh: MariadbServer;
let toLive: LiveAndFresh['toLive'];
let toFresh: LiveAndFresh['toFresh'];
let servers: LiveAndFresh | undefined;
let runDir: string;
let stateDir: string;

const ACCOUNTS = ["'u1'@'localhost'", "'u2'@'%'", "'u3'@'localhost'", "'u4'@'localhost'", "'u5'@'localhost'", "'u6'@'localhost'", "'u7'@'localhost'", "'r1'"];
const ROLES = new Set(["'r1'"]);

const SEED = `
CREATE DATABASE site1_wp CHARACTER SET latin1 COLLATE latin1_german2_ci;
USE site1_wp;
CREATE TABLE wp_posts (id INT PRIMARY KEY, title VARCHAR(50)) ENGINE=InnoDB;
INSERT INTO wp_posts VALUES (1, 'Ärger'), (2, 'Aerger');
CREATE FUNCTION same(a VARCHAR(10)) RETURNS INT DETERMINISTIC RETURN a = 'ae';
CREATE USER 'u1'@'localhost' IDENTIFIED BY 'pw1' PASSWORD EXPIRE;
GRANT SELECT ON site1_wp.wp_posts TO 'u1'@'localhost';
GRANT UPDATE (title) ON site1_wp.wp_posts TO 'u1'@'localhost';
CREATE ROLE r1;
GRANT SELECT, INSERT ON site1_wp.* TO r1;
CREATE USER 'u2'@'%' IDENTIFIED BY 'pw2';
GRANT r1 TO 'u2'@'%';
SET DEFAULT ROLE r1 FOR 'u2'@'%';
CREATE USER 'u3'@'localhost' IDENTIFIED BY 'pw3' ACCOUNT LOCK;
GRANT EXECUTE ON FUNCTION site1_wp.same TO 'u3'@'localhost';
CREATE USER 'u4'@'localhost' IDENTIFIED BY 'pw4';
GRANT PROXY ON 'u1'@'localhost' TO 'u4'@'localhost';
GRANT SELECT ON site1_wp.* TO 'u4'@'localhost';
CREATE USER 'u5'@'localhost' IDENTIFIED BY 'pw5' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10;
GRANT ALL ON \`site1\\_wp\`.* TO 'u5'@'localhost';
CREATE USER 'u6'@'localhost' IDENTIFIED BY 'pw6';
GRANT SELECT ON site1_wp.wp_posts TO 'u6'@'localhost';
CREATE DEFINER='u6'@'localhost' SQL SECURITY DEFINER VIEW site1_wp.v AS SELECT id FROM site1_wp.wp_posts;
CREATE USER 'u7'@'localhost' IDENTIFIED VIA ed25519 USING PASSWORD('pw7');
GRANT SELECT ON site1_wp.wp_posts TO 'u7'@'localhost';
CREATE DATABASE site1_alt CHARACTER SET latin1 COLLATE latin1_german2_ci;
USE site1_alt;
CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10)) ENGINE=InnoDB;
CREATE FUNCTION same(a VARCHAR(10)) RETURNS INT DETERMINISTIC RETURN a = 'ae';
ALTER DATABASE site1_alt COLLATE latin1_swedish_ci;
`;

beforeAll(async () => {
  assertBuilt();
  servers = await liveAndFresh(base, SEED, ["INSTALL SONAME 'auth_ed25519'"]);
  ({ live, fresh, toLive, toFresh, stateDir } = servers);
  runDir = join(servers.dumpsDir, 'latest');
});

afterAll(async () => {
  await servers?.destroy();
  rmrf(base);
});

/** SHOW CREATE USER and SHOW GRANTS of each account, as the server says them ('missing' when it has none). */
async function accounts(server: MariadbServer, names = ACCOUNTS): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const a of names) {
    try {
      out[a] = (await server.sql(`${ROLES.has(a) ? '' : `SHOW CREATE USER ${a};`} SHOW GRANTS FOR ${a}`)).split('\n').filter(Boolean).sort().join('\n');
    } catch {
      out[a] = 'missing';
    }
  }
  return out;
}

/** Every account of the server with its grants: "nothing else was touched". */
async function allAccounts(server: MariadbServer): Promise<Record<string, string>> {
  const names = (await server.sql("SELECT CONCAT(QUOTE(User), IF(is_role = 'Y', '', CONCAT('@', QUOTE(Host)))) FROM mysql.user")).split('\n').filter(Boolean);
  for (const n of names) if (!n.includes('@')) ROLES.add(n);
  return accounts(server, names);
}

const schemaOf = async (server: MariadbServer, db: string): Promise<string> =>
  (await server.sql(`SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${db}'`)).trim();

/** The routine's parameter and its answers: what the database's collation decides. */
const routineOf = async (server: MariadbServer, db: string): Promise<string> =>
  (await server.sql(`SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = '${db}' AND SPECIFIC_NAME = 'same' AND ORDINAL_POSITION = 1; SELECT \`${db}\`.same('ä'), \`${db}\`.same('ae')`)).trim();

describe('a fresh server (the disaster): restore db brings the database and its accounts back as they were', () => {
  test('site1_wp: charset, collation, routine parameters, and every account with its roles, proxy, expiry, lock, TLS, limits and ed25519', async () => {
    const r = await toFresh(['restore', 'db', 'site1_wp']);
    expect(r.code, r.stderr).toBe(0);
    expect(await schemaOf(fresh, 'site1_wp')).toBe(await schemaOf(live, 'site1_wp'));
    expect(await routineOf(fresh, 'site1_wp')).toBe(await routineOf(live, 'site1_wp'));
    expect(await accounts(fresh)).toEqual(await accounts(live));
    // The view's DEFINER exists, so the view answers.
    expect(await fresh.sql('SELECT COUNT(*) FROM site1_wp.v')).toBe('2\n');
    expect(r.stdout).toMatch(/authentication plugins loaded for them: ed25519/);
    expect(r.stdout).toContain("accounts with privileges on 'site1_wp': as in the backup");
  });

  test('site1_alt, whose collation changed after its routine was created: both come back as on the live server', async () => {
    const r = await toFresh(['restore', 'db', 'site1_alt']);
    expect(r.code, r.stderr).toBe(0);
    expect(await schemaOf(fresh, 'site1_alt')).toBe(await schemaOf(live, 'site1_alt'));
    expect(await routineOf(fresh, 'site1_alt')).toBe(await routineOf(live, 'site1_alt'));
  });
});

describe('the live server', () => {
  test('after DROP DATABASE, restore db of a database with table, column and routine grants succeeds; the accounts are as they were', async () => {
    const before = await allAccounts(live);
    const content = await live.sql('CHECKSUM TABLE site1_wp.wp_posts EXTENDED');
    await live.sql('DROP DATABASE site1_wp');
    const r = await toLive(['restore', 'db', 'site1_wp']);
    expect(r.code, r.stderr).toBe(0);
    expect(await live.sql('CHECKSUM TABLE site1_wp.wp_posts EXTENDED')).toBe(content);
    expect(await allAccounts(live)).toEqual(before);
    expect(r.stdout).toContain('no account was created or changed');
  });

  test('--into a new name while the original is gone: its own collation, and no ALTER of the original (was exit 8, db.opt)', async () => {
    const want = await schemaOf(live, 'site1_alt');
    const routine = await routineOf(live, 'site1_alt');
    await live.sql('DROP DATABASE site1_alt');
    const r = await toLive(['restore', 'db', 'site1_alt', '--into', 'site1_alt_copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(await schemaOf(live, 'site1_alt_copy')).toBe(want);
    expect(await routineOf(live, 'site1_alt_copy')).toBe(routine.replace(/site1_alt/g, 'site1_alt_copy'));
    expect(await schemaOf(live, 'site1_alt')).toBe(''); // not created by an ALTER DATABASE
    const back = await toLive(['restore', 'db', 'site1_alt']);
    expect(back.code, back.stderr).toBe(0);
  });

  test('--into beside the original leaves the original\'s collation alone', async () => {
    const want = await schemaOf(live, 'site1_alt');
    const r = await toLive(['restore', 'db', 'site1_alt', '--into', 'site1_alt_b']);
    expect(r.code, r.stderr).toBe(0);
    expect(await schemaOf(live, 'site1_alt')).toBe(want);
    expect(await schemaOf(live, 'site1_alt_b')).toBe(want);
  });

  test('--into creates no account and changes none, also one the admin dropped and grants the admin revoked', async () => {
    await live.sql("DROP USER 'u1'@'localhost'; REVOKE INSERT ON site1_wp.* FROM r1");
    const before = await allAccounts(live);
    const r = await toLive(['restore', 'db', 'site1_wp', '--into', 'site1_wp_copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(await allAccounts(live)).toEqual(before);
    expect(r.stdout).toContain('no account was created or changed');
  });

  test('--into with --grants: the new name gets what the accounts hold on the original now, nothing else changes', async () => {
    const before = await allAccounts(live);
    const r = await toLive(['restore', 'db', 'site1_wp', '--into', 'site1_wp_g', '--grants']);
    expect(r.code, r.stderr).toBe(0);
    const after = await allAccounts(live);
    for (const [account, grants] of Object.entries(before)) {
      // Every grant naming site1_wp exactly, now also naming site1_wp_g; nothing else.
      // A database-level grant comes out naming exactly the new name (its _ escaped, not a pattern).
      const copied = grants
        .split('\n')
        .filter((l) => /ON (FUNCTION )?`site1(\\\\)?_wp`\./.test(l))
        .map((l) => l.replace(/`site1(\\\\)?_wp`\.(\*|`)/, (_m, _esc: string, rest: string) => (rest === '*' ? '`site1\\\\_wp\\\\_g`.*' : '`site1_wp_g`.`')));
      expect(after[account]!.split('\n').sort(), account).toEqual([...grants.split('\n'), ...copied].sort());
    }
    expect(r.stdout).toMatch(/granted on 'site1_wp_g': .*'u5'@'localhost'/);
  });

  test('drift is reported, left alone by default, and --accounts backup makes the accounts the backup\'s', async () => {
    // State: u1 dropped, r1 lost INSERT (previous test), and u5 got a new password.
    await live.sql("ALTER USER 'u5'@'localhost' IDENTIFIED BY 'changed'; CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'; GRANT ALL ON site1_wp.* TO 'intruder'@'%'");
    const snapshot = await allAccounts(live);
    const keep = await toLive(['restore', 'db', 'site1_wp', '--force']);
    console.log(`restore db site1_wp --force after the break-in:\n${keep.stdout}${keep.stderr}`);
    expect(keep.code, keep.stderr).toBe(0);
    expect(keep.stdout).toMatch(/'r1' \(role\): the backup grants what it lacks now/);
    expect(keep.stdout).toMatch(/'u5'@'localhost': password, lock, TLS or limits differ/);
    expect(keep.stdout).toMatch(/'intruder'@'%': holds privileges on 'site1_wp' but is not in the backup/);
    // u1 was missing, so the restore under the dumped name created it again (the database needs it).
    const afterKeep = await allAccounts(live);
    const expected = { ...snapshot, "'u1'@'localhost'": (await accounts(fresh, ["'u1'@'localhost'"]))["'u1'@'localhost'"]! };
    expect(afterKeep).toEqual(expected);
    const exact = await toLive(['restore', 'db', 'site1_wp', '--force', '--accounts', 'backup']);
    console.log(`restore db site1_wp --force --accounts backup:\n${exact.stdout}${exact.stderr}`);
    expect(exact.code, exact.stderr).toBe(0);
    // The fresh server holds the backup's accounts; the live ones also hold the copies' grants
    // (other databases: not touched).
    const want = await accounts(fresh);
    const onOriginal = (all: Record<string, string>): Record<string, string> =>
      Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.split('\n').filter((l) => !/site1(\\\\)?_wp(\\\\)?_(g|copy)`/.test(l)).join('\n')]));
    expect(onOriginal(await accounts(live))).toEqual(want);
    expect((await live.sql("SELECT account_locked FROM mysql.global_priv g, JSON_TABLE(g.Priv, '$' COLUMNS (account_locked BOOL PATH '$.account_locked')) j WHERE User = 'intruder'")).trim()).toBe('1');
    expect(exact.stdout).toMatch(/locked: 'intruder'@'%'/);
  });
});

describe('a restore that fails', () => {
  test('drops the accounts it created again and names them; the journal names them too', async () => {
    const entry = dumpEntry(runDir, 'site1_wp');
    const good = readFileSync(join(runDir, entry.path!));
    const text = await zstdText(join(runDir, entry.path!));
    const damaged = text.replace('-- Dump completed', 'THIS IS NOT SQL THE SERVER TAKES;\n-- Dump completed');
    replaceDump(runDir, 'site1_wp', await zstdBytes(damaged, join(base, 'damaged.sql')), { keepManifestHash: false });
    try {
      await fresh.sql("DROP DATABASE site1_wp; DROP USER 'u1'@'localhost', 'u2'@'%', 'u3'@'localhost', 'u4'@'localhost', 'u5'@'localhost', 'u6'@'localhost', 'u7'@'localhost'; DROP ROLE r1");
      const before = await allAccounts(fresh);
      const r = await toFresh(['restore', 'db', 'site1_wp']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/the account\(s\) it had created were dropped again: .*'u1'@'localhost'/);
      expect(r.stderr).not.toContain('not touched');
      expect(await allAccounts(fresh)).toEqual(before);
      const journal = readFileSync(join(stateDir, 'restores.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { result: string; detail?: string });
      expect(journal.at(-1)!.result).toBe('failed');
      expect(journal.at(-1)!.detail).toContain("'u7'@'localhost'");
    } finally {
      replaceDump(runDir, 'site1_wp', good, { keepManifestHash: false });
    }
  });
});

/** Replace the run's users export (its manifest entry follows: only the restore can tell). */
async function withUsersExport(edit: (text: string) => string, body: () => Promise<void>): Promise<void> {
  const manifestText = readFileSync(join(runDir, 'manifest.json'), 'utf8');
  const manifest = JSON.parse(manifestText) as Manifest;
  const users = manifest.entries.find((e) => e.object === 'users')!;
  const file = join(runDir, users.path!);
  const good = readFileSync(file);
  const bytes = await zstdBytes(edit(await zstdText(file)), join(base, 'users.sql'));
  writeFileSync(file, bytes);
  const { createHash } = await import('node:crypto');
  const entries = manifest.entries.map((e) => (e === users ? { ...e, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length } : e));
  writeFileSync(join(runDir, 'manifest.json'), JSON.stringify({ ...manifest, entries }, null, 2));
  try {
    await body();
  } finally {
    writeFileSync(file, good);
    writeFileSync(join(runDir, 'manifest.json'), manifestText);
  }
}

describe('an authentication plugin the server cannot load', () => {
  test('stops the restore before anything changes, naming the plugin and the account', async () => {
    // An export from a server with GSSAPI accounts, restored where no auth_gssapi library exists.
    const gssapi = (text: string): string =>
      text.replace(
        /^(CREATE USER IF NOT EXISTS `u1`.*)$/m,
        "$1\nCREATE USER IF NOT EXISTS `k1`@`localhost` IDENTIFIED VIA gssapi USING 'HTTP/x@EXAMPLE.COM';\nGRANT SELECT ON `site1_wp`.* TO `k1`@`localhost`;",
      );
    await withUsersExport(gssapi, async () => {
      const before = await allAccounts(fresh);
      const r = await toFresh(['restore', 'db', 'site1_wp']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain("account(s) 'k1'@'localhost' need the authentication plugin 'gssapi'");
      expect(r.stderr).toContain("INSTALL SONAME 'auth_gssapi'");
      expect(r.stderr).toMatch(/nothing was changed.*'site1_wp' was not touched/);
      expect(await allAccounts(fresh)).toEqual(before);
      expect(await schemaOf(fresh, 'site1_wp')).toBe('');
    });
  });
});

describe('verify proves the accounts', () => {
  const verifyState = (): Record<string, { outcome: string; problems: string[] }> =>
    (JSON.parse(readFileSync(join(stateDir, 'verify.json'), 'utf8')) as { databases: Record<string, { outcome: string; problems: string[] }> }).databases;
  const site1wp = (): { outcome: string; problems: string[] } => Object.entries(verifyState()).find(([k]) => k.endsWith(':site1_wp'))![1];

  test('the accounts the throwaway server holds after the load are those recorded at dump time', async () => {
    const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as Manifest;
    const users = manifest.entries.find((e) => e.object === 'users')!;
    // The premise: the list was recorded from the server (SHOW CREATE USER / SHOW GRANTS), secrets digested.
    const recorded = users.details!.accounts as { user: string; host: string; lines: string[] }[];
    const u1 = recorded.find((a) => a.user === 'u1')!;
    expect(u1.lines.join('\n')).toContain('GRANT SELECT, UPDATE (`title`) ON `site1_wp`.`wp_posts` TO `u1`@`localhost`;');
    expect(JSON.stringify(recorded)).not.toContain('*2B602296A79E0A8784ACC5C88D92E46588CCA3C3');
    const r = await toLive(['verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(site1wp()).toMatchObject({ outcome: 'ok', problems: [] });
  });

  test('a users export that lost a grant fails verify, naming the account', async () => {
    const lose = (text: string): string => {
      const lost = text.split('\n').filter((l) => !l.startsWith('GRANT SELECT, UPDATE (`title`) ON `site1_wp`.`wp_posts` TO `u1`')).join('\n');
      expect(lost).not.toBe(text);
      return lost;
    };
    await withUsersExport(lose, async () => {
      const r = await toLive(['verify']);
      expect(r.code).toBe(9);
      expect(site1wp().outcome).toBe('failed');
      // That line was u1's only grant on site1_wp: the export no longer says site1_wp needs u1.
      expect(site1wp().problems).toEqual(["account 'u1'@'localhost' (privileges on 'site1_wp' at dump time) is missing after the load"]);
    });
  });
});
