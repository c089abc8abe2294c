import { chmodSync, chownSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { RestoreError } from '../../lib/errors.js';
import { makePrivateDir, makeTempDir, UnsafeDirectoryError } from '../../lib/private-dir.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { makeFreshDir, pinDir, removeBelow } from '../../lib/restore/pinned.js';

// The two building blocks of docs/security.md on real directories, as root: private working
// directories (lib/private-dir.ts) and no-follow steps from open handles (lib/restore/pinned.ts).

const base = mkdtempSync(join(tmpdir(), 'private-dir-'));
const OTHER = 1003;

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('makeTempDir (scratch files and secrets)', () => {
  test('a sticky world-writable parent (/tmp, /dev/shm) is accepted; one another user owns, or open without the sticky bit, is refused', async () => {
    const sticky = join(base, 'tmp-sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const made = await makeTempDir('asb-x-', sticky);
    expect(statSync(made).mode & 0o777).toBe(0o700);
    expect(statSync(made).uid).toBe(0);
    const open = join(base, 'tmp-open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    await expect(makeTempDir('asb-x-', open)).rejects.toThrow(/refusing .*tmp-open as a temporary directory: .* writable by its group or by others \(mode 777\)/);
    const owned = join(base, 'tmp-owned');
    mkdirSync(owned, { mode: 0o700 });
    chownSync(owned, OTHER, OTHER);
    await expect(makeTempDir('asb-x-', owned)).rejects.toThrow(`belongs to uid ${OTHER}`);
    expect(readdirSync(open)).toEqual([]);
    expect(readdirSync(owned)).toEqual([]);
  });
});

describe('makePrivateDir', () => {
  test('a missing parent is made 0700; each call gets a new 0700 directory', async () => {
    const parent = join(base, 'a/b/staging');
    const one = await makePrivateDir(parent, 'restore-');
    const two = await makePrivateDir(parent, 'restore-');
    expect(one).not.toBe(two);
    for (const d of [parent, one, two]) {
      expect(statSync(d).uid).toBe(0);
      expect(statSync(d).mode & 0o777).toBe(0o700);
    }
  });

  test('a parent someone else owns, or others can write, is refused and left as it was', async () => {
    const owned = join(base, 'owned');
    mkdirSync(owned, { mode: 0o700 });
    chownSync(owned, OTHER, OTHER);
    await expect(makePrivateDir(owned, 'x-')).rejects.toThrow(new UnsafeDirectoryError(`refusing ${owned} as a private working directory: ${owned} belongs to uid ${OTHER}, not root; only root may own and write it and the directories above it (remove it, or point the setting elsewhere)`, owned));
    expect(readdirSync(owned)).toEqual([]);
    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o1777);
    await expect(makePrivateDir(open, 'x-')).rejects.toThrow(/writable by its group or by others \(mode 1777\)/);
    // Above the parent: a group-writable ancestor is refused, a sticky world-writable one (like /tmp) is not.
    const groupW = join(base, 'groupw');
    mkdirSync(groupW);
    chmodSync(groupW, 0o775);
    await expect(makePrivateDir(join(groupW, 'staging'), 'x-')).rejects.toThrow(`${groupW} is writable by its group or by others (mode 775)`);
    const sticky = join(base, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    await expect(makePrivateDir(join(sticky, 'staging'), 'x-')).resolves.toMatch(/staging\/x-/);
    const link = join(base, 'link');
    symlinkSync(join(base, 'a'), link);
    await expect(makePrivateDir(link, 'x-')).rejects.toThrow(`${link} is a symlink (give the real path)`);
  });
});

describe('pinDir, makeFreshDir, removeBelow', () => {
  test('a symlink on the way is followed only when root owns it in a directory only root can write', async () => {
    const real = join(base, 'real');
    mkdirSync(join(real, 'sub'), { recursive: true });
    symlinkSync(real, join(base, 'root-link'));
    const pinned = await pinDir(join(base, 'root-link/sub'));
    expect(statSync(`/proc/self/fd/${pinned.fd}`).ino).toBe(statSync(join(real, 'sub')).ino);
    await pinned.close();
    lchownSync(join(base, 'root-link'), OTHER, OTHER);
    await expect(pinDir(join(base, 'root-link/sub'))).rejects.toThrow(/root-link is a symlink someone other than root could have planted \(uid 1003\)/);
    const open = join(base, 'open-dir');
    mkdirSync(open);
    chmodSync(open, 0o777);
    symlinkSync(real, join(open, 'l'));
    await expect(pinDir(join(open, 'l'))).rejects.toThrow(/l is a symlink someone other than root could have planted \(uid 0\)/);
  });

  test('makeFreshDir refuses a name that exists; removeBelow removes a symlink itself and never what it points at', async () => {
    const tenant = join(base, 'tenant');
    const victim = join(base, 'victim');
    mkdirSync(join(tenant, 'd'), { recursive: true });
    mkdirSync(victim);
    writeFileSync(join(victim, 'secret'), 'root\n');
    symlinkSync(victim, join(tenant, 'd/link'));
    symlinkSync(victim, join(tenant, 'up'));
    const root = await pinDir(tenant);
    try {
      await expect(makeFreshDir(root, 'd')).rejects.toThrow(/already exists/);
      const fresh = await makeFreshDir(root, 'new');
      await fresh.close();
      expect(statSync(join(tenant, 'new')).mode & 0o777).toBe(0o700);
      // 'up/secret' goes through a symlink: left alone. 'd/link' is the symlink: removed itself.
      const left = await removeBelow(root, [Buffer.from('up/secret'), Buffer.from('d/link')]);
      expect(left.map(String)).toEqual(['up/secret']);
    } finally {
      await root.close();
    }
    expect(readdirSync(victim)).toEqual(['secret']);
    expect(readdirSync(join(tenant, 'd'))).toEqual([]);
  });

  test('an entry that cannot be removed (immutable) is a restore error naming it, not a crash', async () => {
    const dir = join(base, 'immutable');
    mkdirSync(dir);
    writeFileSync(join(dir, 'f'), 'x');
    await run(cmd('chattr', ['+i', join(dir, 'f')]));
    const root = await pinDir(dir);
    try {
      await expect(removeBelow(root, [Buffer.from('f')])).rejects.toThrow(new RestoreError(`${dir}/f: cannot be removed (EPERM: operation not permitted, unlink '/proc/self/fd/${root.fd}/f')`, { path: `${dir}/f` }));
    } finally {
      await root.close();
      await run(cmd('chattr', ['-i', join(dir, 'f')]));
    }
  });
});
