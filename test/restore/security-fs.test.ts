import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lchownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { track } from '../../lib/proc/process-group.js';
import { run } from '../../lib/proc/run.js';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { assertBuilt, rmrf, stopServers } from '../helpers/e2e.js';
import { createRestoreFixture, type RestoreFixture } from '../helpers/restore-fixture.js';

// Attacks on the filesystem side of restores (issue 23, findings 2-4), through the BUILT CLI as
// root, with a real restic repository: a tenant (a real unprivileged user owning site1's files)
// races the restore with renameat2(RENAME_EXCHANGE), a local user plants the staging directory,
// a tenant plants symlinks where --target writes. Whatever the restore's exit code, nothing
// outside the site may change: the victim directories are compared with what they held.

const base = mkdtempSync(join(tmpdir(), 'security-fs-'));
chmodSync(base, 0o755);
// This test names its tenants' uids on the host (useradd -o): a base of its own keeps those names
// away from the trees other test files back up at the same time (buildApiscpTree's uidBase).
const UID_BASE = 7000;
const TENANT_UID = UID_BASE + 1; // site1's owner in the sandbox tree
const TENANT = 'asbfs-tenant1';
const OTHER_UID = UID_BASE + 3; // site3's owner: "a local user" who is not site1
const OTHER = 'asbfs-tenant3';
let servers: Servers;
let f: RestoreFixture;
let html: string;
let swapper: string;

/** Names a tenant may give its files: shell and SQL syntax, newlines, leading dashes, bytes that are not UTF-8. */
const HOSTILE_NAMES: Buffer[] = [Buffer.from('");\n'), Buffer.from('-rf'), Buffer.from('--help'), Buffer.from('new\nline\n'), Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]), Buffer.from('dé $(id)')];

const under = (dir: string, name: Buffer): Buffer => Buffer.concat([Buffer.from(dir + '/'), name]);

beforeAll(async () => {
  assertBuilt();
  for (const [name, uid] of [[TENANT, TENANT_UID], [OTHER, OTHER_UID]] as const) {
    await run(cmd('userdel', [name]), { exitClass: exitClasses({ ok: [6] }) });
    // -o: the sandbox's site uids may already have a name on this machine.
    await run(cmd('useradd', ['-o', '-u', String(uid), '-M', '-N', '-s', '/usr/sbin/nologin', name]));
  }
  // The swapper: renameat2(a, b, RENAME_EXCHANGE) as fast as it can, as the tenant.
  writeFileSync(
    join(base, 'swap.c'),
    `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#define RENAME_EXCHANGE (1 << 1)
int main(int argc, char **argv) {
  if (argc != 3) return 2;
  if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) != 0) { perror("renameat2"); return 1; }
  for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
}
`,
  );
  swapper = join(base, 'swap');
  await run(cmd('cc', ['-O2', '-o', swapper, join(base, 'swap.c')]));
  servers = await startServers();
  f = await createRestoreFixture(base, 'restic', servers, { uidBase: UID_BASE });
  html = join(f.tree.home, 'site1/shadow/var/www/html');
  // What the tenant had at backup time: a directory it will later swap, and hostile names.
  mkdirSync(join(html, 'up'));
  writeFileSync(join(html, 'up/page.html'), 'page at backup time\n');
  chownSync(join(html, 'up'), TENANT_UID, TENANT_UID);
  chownSync(join(html, 'up/page.html'), TENANT_UID, TENANT_UID);
  for (const name of HOSTILE_NAMES) {
    writeFileSync(under(html, name), Buffer.concat([Buffer.from('content of '), name]));
    chownSync(under(html, name), TENANT_UID, TENANT_UID);
  }
  // Two names of one file.
  writeFileSync(join(html, 'hl-a'), 'linked\n');
  chownSync(join(html, 'hl-a'), TENANT_UID, TENANT_UID);
  linkSync(join(html, 'hl-a'), join(html, 'hl-b'));
  const r = await f.cli(['run']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await stopServers(servers);
  for (const name of [TENANT, OTHER]) await run(cmd('userdel', [name]), { exitClass: exitClasses({ ok: [6] }) });
  rmrf(base);
});

/** A root-owned directory outside every site, with files named as the tenant's, and what it holds. */
function makeVictim(name: string, files: readonly string[]): { dir: string; holds: () => Record<string, string> } {
  const dir = join(base, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o755 });
  for (const file of files) writeFileSync(join(dir, file), `root's ${file}\n`, { mode: 0o600 });
  const holds = (): Record<string, string> =>
    Object.fromEntries(
      readdirSync(dir)
        .sort()
        .map((n) => {
          const st = lstatSync(join(dir, n));
          return [n, st.isFile() ? `${st.uid}:${(st.mode & 0o7777).toString(8)}:${readFileSync(join(dir, n), 'utf8')}` : `not a file (${st.mode.toString(8)})`];
        }),
    );
  return { dir, holds };
}

function startSwapper(a: string, b: string): ChildProcess {
  const child = spawn(swapper, [a, b], { uid: TENANT_UID, gid: TENANT_UID, stdio: 'ignore' });
  track(child);
  return child;
}

async function stopSwapper(child: ChildProcess): Promise<void> {
  if (child.exitCode === null) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }
}

describe('a tenant races `restore site --in-place --exact` (renameat2 RENAME_EXCHANGE)', () => {
  const FILES = [...Array.from({ length: 400 }, (_, i) => `f${i}`), 'secret.txt'];

  test.each([1, 2, 3, 4])('removal of extra entries, try %i: a directory swapped with a symlink to a root directory; nothing there is deleted', async () => {
    const victim = makeVictim('VICTIM', FILES);
    const before = victim.holds();
    const evil = join(html, 'evil');
    mkdirSync(evil);
    for (const file of FILES) writeFileSync(join(evil, file), 'tenant\n');
    for (const p of [evil, ...FILES.map((file) => join(evil, file))]) chownSync(p, TENANT_UID, TENANT_UID);
    symlinkSync(victim.dir, join(html, 'evil-link'));
    lchownSync(join(html, 'evil-link'), TENANT_UID, TENANT_UID);
    const child = startSwapper(evil, join(html, 'evil-link'));
    try {
      const r = await f.cli(['restore', 'site', 'site1', '--files', '--in-place', '--exact']).finally(() => stopSwapper(child));
      expect(victim.holds()).toEqual(before);
      // The restore may finish (0) or say what it left alone (8); never an internal error.
      expect([0, 8], r.stderr).toContain(r.code);
      expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
      if (r.code === 8) expect(r.stderr).toMatch(/left alone \(no symlink was followed\)|kept changing while it was compared/);
    } finally {
      rmSync(evil, { recursive: true, force: true });
      rmSync(join(html, 'evil-link'), { recursive: true, force: true });
    }
  });

  test.each([1, 2, 3])('rewriting changed entries, try %i: the directory holding them swapped with a symlink to a root directory; nothing there is written', async () => {
    const victim = makeVictim('VICTIM2', ['page.html', 'other']);
    const before = victim.holds();
    writeFileSync(join(html, 'up/page.html'), 'defaced\n');
    symlinkSync(victim.dir, join(html, 'up-link'));
    lchownSync(join(html, 'up-link'), TENANT_UID, TENANT_UID);
    const child = startSwapper(join(html, 'up'), join(html, 'up-link'));
    try {
      const r = await f.cli(['restore', 'site', 'site1', '--files', '--in-place']).finally(() => stopSwapper(child));
      expect(victim.holds()).toEqual(before);
      expect([0, 8], r.stderr).toContain(r.code);
      expect(r.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
    } finally {
      // Put site1's `up` back as it was for the next try.
      for (const p of ['up', 'up-link']) rmSync(join(html, p), { recursive: true, force: true });
      mkdirSync(join(html, 'up'));
      writeFileSync(join(html, 'up/page.html'), 'page at backup time\n');
      chownSync(join(html, 'up'), TENANT_UID, TENANT_UID);
      chownSync(join(html, 'up/page.html'), TENANT_UID, TENANT_UID);
    }
  });
});

describe('restore.staging_dir planted by a local user', () => {
  test('an existing staging directory owned by another user: refused with a clear error, nothing staged, nothing restored', async () => {
    const staging = f.loaded.paths.stagingDir;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    chownSync(staging, OTHER_UID, OTHER_UID);
    chmodSync(staging, 0o777);
    const target = join(base, 'copy-planted');
    try {
      const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', target]);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`refusing ${staging} as a private working directory: ${staging} belongs to uid ${OTHER_UID}, not root`);
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
      expect(readdirSync(staging)).toEqual([]);
      expect(existsSync(target)).toBe(false);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  });

  test('a root-owned staging directory others can write, or a parent of it: refused too', async () => {
    const staging = f.loaded.paths.stagingDir;
    const parent = join(staging, '..');
    const parentMode = statSync(parent).mode & 0o7777;
    mkdirSync(staging, { recursive: true });
    try {
      chmodSync(staging, 0o1777);
      const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', join(base, 'copy-1777')]);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`${staging} is writable by its group or by others (mode 1777)`);
      chmodSync(staging, 0o700);
      chmodSync(parent, 0o777);
      const p = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', join(base, 'copy-777')]);
      expect(p.code, p.stderr).toBe(8);
      expect(p.stderr).toContain(`${parent} is writable by its group or by others (mode 777)`);
      expect(readdirSync(staging)).toEqual([]);
    } finally {
      chmodSync(parent, parentMode);
      rmSync(staging, { recursive: true, force: true });
    }
  });

  test('a restore stages into a fresh 0700 directory of its own and removes it', async () => {
    const staging = f.loaded.paths.stagingDir;
    const target = join(base, 'copy-fresh');
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(staging).uid).toBe(0);
    expect(statSync(staging).mode & 0o077).toBe(0);
    expect(readdirSync(staging)).toEqual([]);
  });
});

describe('dumps.dir others can write', () => {
  test('a restore from a local run is refused: a planted manifest and its dumps would match each other', async () => {
    const dumps = f.loaded.paths.dumpsDir;
    const mode = statSync(dumps).mode & 0o7777;
    chmodSync(dumps, 0o777);
    try {
      const r = await f.cli(['restore', 'db', 'postgres', '--into', 'planted']);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toContain(`refusing ${dumps} as the directory of local runs (dumps.dir): ${dumps} is writable by its group or by others (mode 777)`);
      expect((await servers.postgres.sql(`SELECT count(*) FROM pg_database WHERE datname = 'planted'`)).trim()).toBe('0');
    } finally {
      chmodSync(dumps, mode);
    }
  });
});

describe('--target inside a tenant tree', () => {
  test('the tenant planted <target>/site1 as a symlink to a root directory: nothing is written there', async () => {
    const victim = makeVictim('VICTIM3', ['secret.txt']);
    const before = victim.holds();
    const target = join(f.tree.home, 'site2/shadow/var/www/html/rf');
    mkdirSync(target);
    chownSync(target, UID_BASE + 2, UID_BASE + 2);
    symlinkSync(victim.dir, join(target, 'site1'));
    lchownSync(join(target, 'site1'), UID_BASE + 2, UID_BASE + 2);
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html', '--target', target]);
    expect(victim.holds()).toEqual(before);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/already exists: remove it or choose another --target/);
    rmSync(target, { recursive: true, force: true });
  });

  test('a symlink on the way to --target that a tenant owns: refused, nothing written through it', async () => {
    const victim = makeVictim('VICTIM4', ['secret.txt']);
    const before = victim.holds();
    const link = join(f.tree.home, 'site2/shadow/var/www/html/out');
    symlinkSync(victim.dir, link);
    lchownSync(link, UID_BASE + 2, UID_BASE + 2);
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/index.html', '--target', join(link, 'rf')]);
    expect(victim.holds()).toEqual(before);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toContain(`out is a symlink someone other than root could have planted (uid ${UID_BASE + 2})`);
    rmSync(link);
  });

  test('inside a tenant tree, the copy lands in a new root-only directory, the tenant\'s own files untouched', async () => {
    const target = join(f.tree.home, 'site2/shadow/var/www/html/restored');
    mkdirSync(target);
    chownSync(target, UID_BASE + 2, UID_BASE + 2);
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/deep', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    const into = join(target, 'site1');
    expect(statSync(into).uid).toBe(0);
    expect(statSync(into).mode & 0o777).toBe(0o700);
    const deep = f.tree.included.filter((p) => p.startsWith('home/virtual/site1/shadow/var/www/html/deep'));
    const rels = deep.map((p) => p.slice('home/virtual/site1/'.length));
    expect(Object.fromEntries(await snapshotTree(into, rels))).toEqual(Object.fromEntries(await snapshotTree(join(f.tree.home, 'site1'), rels)));
    rmSync(target, { recursive: true, force: true });
  });
});

describe('hostile names and single files', () => {
  test('names with `");\\n`, newlines, leading dashes and bytes that are not UTF-8: removed and put back by `restore site --in-place --exact`', async () => {
    const rels = HOSTILE_NAMES.map((n) => `home/virtual/site1/shadow/var/www/html/${n.toString('latin1')}`);
    const original = Object.fromEntries(readFileSyncAll(HOSTILE_NAMES));
    for (const name of HOSTILE_NAMES) rmSync(under(html, name));
    // Extra files with such names: --exact removes them.
    const extras = [Buffer.from('-x\n'), Buffer.from([0x2d, 0xc3, 0x28])];
    for (const name of extras) writeFileSync(under(html, name), 'extra');
    const r = await f.cli(['restore', 'site', 'site1', '--files', '--in-place', '--exact']);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.fromEntries(readFileSyncAll(HOSTILE_NAMES))).toEqual(original);
    for (const name of HOSTILE_NAMES) expect(lstatSync(under(html, name)).uid).toBe(TENANT_UID);
    for (const name of extras) expect(existsSync(under(html, name))).toBe(false);
    expect(rels.length).toBe(HOSTILE_NAMES.length);
  });

  test('restore files of single hostile names (argv), in place and into --target as files', async () => {
    for (const name of ['");\n', '-rf', '--help', 'new\nline\n']) {
      writeFileSync(join(html, name), 'changed');
      const r = await f.cli(['restore', 'files', 'site1', `/var/www/html/${name}`, '--in-place']);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(join(html, name), 'utf8')).toBe(`content of ${name}`);
    }
    const target = join(base, 'copy-names');
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/-rf', '/var/www/html/");\n', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    for (const name of ['-rf', '");\n']) {
      const copy = join(target, 'site1/shadow/var/www/html', name);
      expect(lstatSync(copy).isFile()).toBe(true);
      expect(readFileSync(copy, 'utf8')).toBe(`content of ${name}`);
    }
  });

  test('a hostile site name is a usage error', async () => {
    for (const site of ['-rf', 'site1\n', '../site1', 'site1");']) {
      const r = await f.cli(['restore', 'site', '--', site]);
      expect(r.code, `${site}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/is not a site id \(siteN\)/);
    }
  });

  test('one file into --target comes back as that file (owner, mode, content, ACLs), not as a directory', async () => {
    const target = join(base, 'copy-one');
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/index.html', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    const rel = 'shadow/var/www/html/index.html';
    expect(lstatSync(join(target, 'site1', rel)).isFile()).toBe(true);
    expect(Object.fromEntries(await snapshotTree(join(target, 'site1'), [rel]))).toEqual(Object.fromEntries(await snapshotTree(join(f.tree.home, 'site1'), [rel])));
  });

  test('restore site --in-place keeps hard links: a lost name of a linked file comes back as a link, not a copy', async () => {
    rmSync(join(html, 'hl-b'));
    const r = await f.cli(['restore', 'site', 'site1', '--files', '--in-place']);
    expect(r.code, r.stderr).toBe(0);
    const [a, b] = [statSync(join(html, 'hl-a')), statSync(join(html, 'hl-b'))];
    expect(b.ino).toBe(a.ino);
    expect(a.nlink).toBe(2);
    expect(readFileSync(join(html, 'hl-b'), 'utf8')).toBe('linked\n');
  });

  test('a path the backup does not hold: exit 8 naming it, nothing created', async () => {
    const target = join(base, 'copy-none');
    const r = await f.cli(['restore', 'files', 'site1', '/var/www/html/no such file', '--target', target]);
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/does not contain .*\/var\/www\/html\/no such file/);
    expect(existsSync(join(target, 'site1'))).toBe(false);
  });
});

function readFileSyncAll(names: readonly Buffer[]): [string, string][] {
  return names.map((n) => [n.toString('hex'), `${(statSync(under(html, n)).mode & 0o7777).toString(8)}:${readFileSync(under(html, n)).toString('hex')}`]);
}
