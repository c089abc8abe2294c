import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, type LoadedConfig } from '../../lib/config/load.js';
import { borgEnv } from '../../lib/engine/borg.js';
import { resticEnv } from '../../lib/engine/restic.js';
import { resticTlsArgs } from '../../lib/engine/remote.js';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { assertBuilt, mysqlFingerprint, rmrf, stopServers, type CliResult } from '../helpers/e2e.js';
import { createRestoreFixture, seedSiteDatabases, siteFingerprints, SITE2_ROLE, SITE2_USER, type RestoreFixture } from '../helpers/restore-fixture.js';
import { sampleProcesses, startOffsite, type Offsite } from './offsite.js';

// The suite of test/offsite/borg.test.ts and test/offsite/restic.test.ts. Issue 30 items 1 and 4: an ApisCP server (network namespace `srv`) backs up to a backup host
// (`bkp`) over a real link: borg through sshd's forced `borg serve --append-only`, restic through
// `rclone serve restic --append-only` over TLS with a client certificate. The server backs up,
// lists, reports status and restores a database and a site through them; a server that tries to
// delete or rewrite history is refused, and the backup host's files stay as they were. Secrets
// never show on argv (ps sampled during the runs) nor in logs.

let base: string;
let servers: Servers;
let offsite: Offsite;

/** Every file below `dir` (relative path → sha256): what the backup host holds. */
function hashTree(dir: string, skip: (rel: string) => boolean = () => false): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (skip(rel)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(rel, createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

/** Every file that was there is still there, byte for byte. */
function expectKept(before: Map<string, string>, after: Map<string, string>): void {
  const changed = [...before].filter(([rel, h]) => after.get(rel) !== h).map(([rel]) => rel);
  expect(changed).toEqual([]);
}

interface Listed {
  backups: { id: string; time: string }[];
}

/** A hacked site2: files deleted, changed and added; its databases, user and role dropped. */
async function breakSite2(f: RestoreFixture): Promise<void> {
  const html = join(f.tree.home, 'site2/shadow/var/www/html');
  rmSync(join(html, 'index.html'));
  writeFileSync(join(html, 'name with space.txt'), 'defaced\n');
  writeFileSync(join(html, 'shell.php'), '<?php system($_GET["c"]);');
  for (const db of ['site2_db', `site2_-x $(id) 'q' ü`]) await servers.mariadb.sql(`DROP DATABASE \`${db}\``);
  await servers.mariadb.sql(`DROP USER '${SITE2_USER}'@'localhost'`);
  await servers.postgres.sql('DROP DATABASE site2_blog');
  await servers.postgres.sql(`DROP ROLE "${SITE2_ROLE}"`);
}

/** One engine's suite (test/offsite/borg.test.ts, test/offsite/restic.test.ts: a file each keeps each file's time short). */
export function remoteEngineSuite(engine: 'borg' | 'restic'): void {
  beforeAll(async () => {
    assertBuilt();
    base = mkdtempSync(join(tmpdir(), `offsite-${engine}-`));
    [servers, offsite] = await Promise.all([startServers(), startOffsite(base)]);
    await seedSiteDatabases(servers);
  }, 120_000);

  afterAll(async () => {
    await offsite?.stop();
    await stopServers(servers);
    rmrf(base);
  });

  describe(`${engine} to an append-only backup host`, () => {
    let f: RestoreFixture;
    let config: string;
    let loaded: LoadedConfig;
    let first: Record<string, string>;
    let site2AtBackup: Record<string, Record<string, string>>;
    let listed: Listed;
    const outputs: CliResult[] = [];
    let seenArgs: string[] = [];
    const sshKey = (): string => join(f.root, 'etc/apiscp-backup/ssh/borg_ed25519');
    const onServer = async (args: readonly string[]): Promise<CliResult> => {
      const r = await offsite.cli(config, args, f.env);
      outputs.push(r);
      return r;
    };
    const repoDir = (): string => (engine === 'borg' ? join(offsite.borgDir, 'srv') : join(offsite.resticDir, 'srv'));

    beforeAll(async () => {
      f = await createRestoreFixture(base, engine, servers);
      config = f.config;
      const c = JSON.parse(readFileSync(config, 'utf8')) as Record<string, unknown>;
      const secret = join(f.dir, 'secret');
      c[engine] =
        engine === 'borg'
          ? { repository: `ssh://${offsite.user.name}@${offsite.address}${repoDir()}`, passphrase_file: secret, ssh_key: sshKey(), ssh_known_hosts: offsite.knownHosts, append_only: true, keep: { last: 100 } }
          : { repository: `rest:https://${offsite.address}:8000/srv/`, password_file: secret, cacert: offsite.tls.ca, tls_client_cert: offsite.tls.clientPem, append_only: true, keep: { last: 100 } };
      writeFileSync(config, JSON.stringify(c, null, 2), { mode: 0o600 });
      loaded = loadConfig({ file: config });

      const url = (loaded.config[engine] as { repository: string }).repository;
      const setup = await onServer(['repo-init', '--remote', url, '--write', join(f.dir, 'for-backup-host')]);
      expect(setup.code, setup.stderr).toBe(0);
      if (engine === 'borg') {
        // The key repo-init made: 0600 root; the line pins it to append-only borg serve on one path.
        const st = statSync(sshKey());
        expect([st.mode & 0o777, st.uid]).toEqual([0o600, 0]);
        const line = readFileSync(join(f.dir, 'for-backup-host'), 'utf8').trim();
        expect(line).toBe(`command="borg serve --append-only --restrict-to-path ${repoDir()}",restrict ${readFileSync(`${sshKey()}.pub`, 'utf8').trim()}`);
        expect(setup.stdout).toContain(line);
        // The backup host's admin installs it.
        writeFileSync(offsite.authorizedKeys, line + '\n');
      } else {
        expect(setup.stdout).toMatch(/rclone serve restic --append-only/);
      }
      const init = await onServer(['repo-init']);
      expect(init.code, init.stderr).toBe(0);

      await servers.mariadb.sql(`DELETE FROM \`site2_db\`.items WHERE id >= 1000`);
      first = await mysqlFingerprint(servers.mariadb, 'site2_db');
      const ps = sampleProcesses();
      try {
        const r1 = await onServer(['run']);
        expect(r1.code, r1.stderr).toBe(0);
        await new Promise((r) => setTimeout(r, 1100));
        await servers.mariadb.sql(`INSERT INTO \`site2_db\`.items VALUES (1000, 'after the first backup', NULL)`);
        const r2 = await onServer(['run']);
        expect(r2.code, r2.stderr).toBe(0);
      } finally {
        seenArgs = await ps.stop();
      }
      site2AtBackup = await siteFingerprints(servers, 'site2');
    }, 240_000);

    test('list and status work unchanged through the remote', async () => {
      const r = await onServer(['--json', 'list']);
      expect(r.code, r.stderr).toBe(0);
      listed = JSON.parse(r.stdout) as Listed;
      expect(listed.backups.length).toBe(2);
      const status = await onServer(['status']);
      expect(status.code, status.stdout).toBe(0);
      expect(status.stdout).toMatch(/^OK/);
      // The repository is on the backup host, not here.
      expect(readdirSync(repoDir()).length).toBeGreaterThan(0);
    });

    test('secrets: never on argv while the runs went, never in logs; config validate checks their modes', async () => {
      const secret = readFileSync(join(f.dir, 'secret'), 'utf8').trim();
      const keyBody =
        engine === 'borg'
          ? readFileSync(sshKey(), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('')
          : offsite.tls.clientKeyBody;
      // Pieces of the key are enough to find it: any 24-character run of its base64.
      // (An OpenSSH private key file carries its public key too: pieces of that are not secret.)
      const pub = engine === 'borg' ? readFileSync(`${sshKey()}.pub`, 'utf8') : '';
      const keyPieces = Array.from({ length: Math.floor(keyBody.length / 24) }, (_, i) => keyBody.slice(i * 24, i * 24 + 24)).filter((p) => !pub.includes(p));
      // The sampler saw our tool at work (else it proves nothing).
      expect(seenArgs.some((a) => a.includes(engine === 'borg' ? 'borg create' : 'restic') && a.includes(f.root)), seenArgs.filter((a) => /borg|restic/.test(a)).join('\n')).toBe(true);
      const leaks = (text: string): boolean => text.includes(secret) || keyPieces.some((p) => text.includes(p));
      expect(seenArgs.filter(leaks)).toEqual([]);
      const logs = [f.loaded.paths.logFile, ...readdirSync(f.loaded.paths.stateDir).map((n) => join(f.loaded.paths.stateDir, n))].filter((p) => existsSync(p) && statSync(p).isFile());
      expect(logs.length).toBeGreaterThan(0);
      for (const p of logs) expect(leaks(readFileSync(p, 'utf8')), p).toBe(false);
      for (const o of outputs) expect(leaks(o.stdout + o.stderr), o.stdout + o.stderr).toBe(false);

      const files = engine === 'borg' ? [join(f.dir, 'secret'), sshKey()] : [join(f.dir, 'secret'), offsite.tls.clientPem];
      expect((await onServer(['config', 'validate'])).code).toBe(0);
      for (const file of files) {
        chmodSync(file, 0o644);
        const bad = await onServer(['config', 'validate']);
        chmodSync(file, 0o600);
        expect(bad.code).toBe(2);
        expect(bad.stderr).toContain(`${file}: mode 0644: other users can read the secret`);
      }
      expect((await onServer(['config', 'validate'])).code).toBe(0);
    });

    test('a server that tries to delete or rewrite history is refused; the backup host keeps every byte', async () => {
      const before = hashTree(repoDir(), (rel) => rel.startsWith('locks') || /^(index|hints|integrity)\.\d+$/.test(rel) || rel === 'transactions' || rel === 'nonce');
      const ok = exitClasses({ ok: [1, 2, 3, 10, 11, 12, 130] });
      if (engine === 'borg') {
        const env = { ...borgEnv(loaded), HOME: offsite.clientHome, BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: 'YES' };
        const borg = (args: string[]) => run(offsite.onServer(cmd('borg', args, { env })), { exitClass: ok });
        const lastGood = readFileSync(join(repoDir(), 'transactions'), 'utf8').trim().split('\n').at(-1)!;
        // The whole repository: refused outright.
        const wipe = await borg(['delete', '--force']);
        expect(wipe.exitCode, wipe.stderr).not.toBe(0);
        // Archives: borg marks them deleted in a new transaction, which append-only keeps apart.
        await borg(['delete', `::${listed.backups[1]!.id}`]);
        await borg(['prune', '--glob-archives', '*', '--keep-last', '1']);
        await borg(['delete', `::${listed.backups[0]!.id}`]);
        await borg(['compact']);
        // A shell instead of borg serve: the forced command runs borg serve whatever is asked.
        const shell = await run(offsite.onServer(cmd('ssh', ['-i', sshKey(), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${offsite.knownHosts}`, `${offsite.user.name}@${offsite.address}`, `rm -rf ${repoDir()}`], { env: { HOME: offsite.clientHome } })), { exitClass: exitClasses({ ok: [1, 2, 255] }) });
        expect(shell.exitCode).not.toBe(0);
        expectKept(before, hashTree(repoDir()));
        // What the client sees until the backup host rolls back: the archives are hidden, not gone.
        const hidden = JSON.parse((await onServer(['--json', 'list'])).stdout) as Listed;
        expect(hidden.backups).toEqual([]);
        rollBackBorg(repoDir(), lastGood);
        // The client's cache and security record describe the rolled-back future: drop them (docs/offsite.md).
        rmSync(join(offsite.clientHome, '.cache/borg'), { recursive: true, force: true });
        rmSync(join(offsite.clientHome, '.config/borg/security'), { recursive: true, force: true });
      } else {
        const env = resticEnv(loaded);
        const restic = (args: string[]) => run(offsite.onServer(cmd('restic', [...resticTlsArgs(loaded), ...args], { env })), { exitClass: ok });
        const ids = listed.backups.map((b) => b.id);
        // (restic retries the refused DELETE with back-off before it gives up: one attempt is enough.)
        const forget = await restic(['forget', '--prune', ...ids]);
        expect(forget.exitCode, forget.stderr).not.toBe(0);
        // Straight at the REST server with our own certificate: delete and overwrite a pack, a snapshot.
        const pack = [...before.keys()].find((k) => k.startsWith('data/'))!.split('/').pop()!;
        const snap = [...before.keys()].find((k) => k.startsWith('snapshots/'))!.split('/').pop()!;
        const url = `https://${offsite.address}:8000/srv`;
        const curl = async (args: string[]): Promise<string> =>
          (await run(offsite.onServer(cmd('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', offsite.tls.ca, '--cert', offsite.tls.clientPem, ...args])))).stdout;
        expect(await curl(['-X', 'DELETE', `${url}/data/${pack}`])).toBe('403');
        expect(await curl(['-X', 'POST', '--data-binary', 'ransom', `${url}/data/${pack}`])).toBe('403');
        expect(await curl(['-X', 'DELETE', `${url}/snapshots/${snap}`])).toBe('403');
        expect(await curl(['-X', 'DELETE', `${url}/keys/${[...before.keys()].find((k) => k.startsWith('keys/'))!.split('/').pop()!}`])).toBe('403');
        expectKept(before, hashTree(repoDir(), (rel) => rel.startsWith('locks')));
        const check = await restic(['check', '--read-data']);
        expect(check.exitCode, check.stderr).toBe(0);
      }
      const after = JSON.parse((await onServer(['--json', 'list'])).stdout) as Listed;
      expect(after.backups.map((b) => b.id).sort()).toEqual(listed.backups.map((b) => b.id).sort());
    });

    test('restore db from the older backup through the link: the content at that backup', async () => {
      const r = await onServer(['restore', 'db', 'site2_db', '--from', listed.backups[1]!.id, '--into', 'site2_db_old']);
      expect(r.code, r.stderr).toBe(0);
      expect(await mysqlFingerprint(servers.mariadb, 'site2_db_old')).toEqual(first);
      await servers.mariadb.sql('DROP DATABASE site2_db_old');
    });

    test('restore site: a broken site2 comes back, files and databases as at backup time', async () => {
      const site2 = f.tree.included.filter((p) => p.startsWith('home/virtual/site2/'));
      const filesBefore = Object.fromEntries(await snapshotTree(f.root, site2));
      await breakSite2(f);
      const r = await onServer(['restore', 'site', 'site2', '--in-place', '--exact']);
      expect(r.code, r.stderr).toBe(0);
      expect(Object.fromEntries(await snapshotTree(f.root, site2))).toEqual(filesBefore);
      expect(existsSync(join(f.tree.home, 'site2/shadow/var/www/html/shell.php'))).toBe(false);
      expect(await siteFingerprints(servers, 'site2')).toEqual(site2AtBackup);
    });

    test('retention: the client never prunes the append-only remote; prune --print gives the backup host its line', async () => {
      // list and status say where pruning happens (the backup host), naming the repository.
      const url = (loaded.config[engine] as { repository: string }).repository;
      const said = new RegExp(`^retention: ${engine}\\.append_only: this server never prunes ${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}; the backup host does \\(\`apiscp-backup prune --print\` gives its daily line\\)$`, 'm');
      expect((await onServer(['list'])).stdout).toMatch(said);
      expect((await onServer(['status'])).stdout).toMatch(said);
      expect(JSON.parse((await onServer(['--json', 'list'])).stdout).retention).toMatch(said);
      expect(JSON.parse((await onServer(['--json', 'status'])).stdout).retention).toMatch(said);
      const refused = await onServer(['prune']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/pruned on the backup host/);
      const printed = await onServer(['prune', '--print', '--client', 'srvname']);
      expect(printed.code, printed.stderr).toBe(0);
      expect(printed.stdout).toContain(engine === 'borg' ? `BORG_REPO=${repoDir()}` : '--host srvname');
      expect(printed.stdout).toMatch(engine === 'borg' ? /borg prune --glob-archives 'srvname-\*' --keep-last 100/ : /restic forget --prune --tag apiscp-backup --host srvname/);
    });
  });
}

/**
 * borg's documented append-only recovery, on the backup host: drop the segments written after
 * the last good transaction and the index files (borg rebuilds them from the segments).
 */
function rollBackBorg(repo: string, lastGoodLine: string): void {
  const good = Number(/^transaction (\d+),/.exec(lastGoodLine)?.[1]);
  expect(Number.isFinite(good)).toBe(true);
  for (const dir of readdirSync(join(repo, 'data'))) {
    for (const seg of readdirSync(join(repo, 'data', dir))) if (Number(seg) > good) rmSync(join(repo, 'data', dir, seg));
  }
  for (const n of readdirSync(repo)) if (/^(index|hints|integrity)\.\d+$/.test(n)) rmSync(join(repo, n));
}
