import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSecretDir, secretDirParent } from '../../lib/secret-dir.js';

// Real filesystems: a tmpfs we mount (we are root, as in CI) and a directory on the checkout's
// own disk (not a tmpfs: the assertion below says so, so the test cannot pass by accident).
describe('where a file holding a secret goes', () => {
  mkdirSync(join(process.cwd(), '.vitest-tmp'), { recursive: true });
  const base = mkdtempSync(join(process.cwd(), '.vitest-tmp', 'secret-dir-'));
  const memory = join(base, 'memory');
  const disk = join(base, 'disk');

  beforeAll(async () => {
    mkdirSync(memory);
    mkdirSync(disk);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', memory]);
    const fsType = (dir: string): Promise<string> => execa('stat', ['-f', '-c', '%T', dir]).then((r) => r.stdout.trim());
    expect(await fsType(memory)).toBe('tmpfs');
    expect(await fsType(disk)).not.toBe('tmpfs');
  });
  afterAll(async () => {
    await execa('umount', [memory], { reject: false });
    rmSync(base, { recursive: true, force: true });
  });

  it('the temp dir when it is a tmpfs', () => {
    expect(secretDirParent(memory, disk)).toBe(memory);
  });

  it('the shared-memory tmpfs when the temp dir is on a disk', () => {
    expect(secretDirParent(disk, memory)).toBe(memory);
  });

  it('the temp dir when no tmpfs is there (a 0700 directory, as before)', () => {
    expect(secretDirParent(disk, join(base, 'missing'))).toBe(disk);
  });

  it('makeSecretDir creates a fresh 0700 directory', async () => {
    const dir = await makeSecretDir('asb-test-');
    try {
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(dir).isDirectory()).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
