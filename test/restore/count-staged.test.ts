import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { countStaged } from '../../lib/restore/target.js';

// `restore site --target`'s count of what DIR receives, against find(1)'s own count of the same
// tree (entries, and the bytes of regular files), on names a tenant may choose.
const base = mkdtempSync(join(tmpdir(), 'count-staged-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

test('countStaged counts as find does: every entry once, symlinks not followed, any name', async () => {
  const site = join(base, 'site2');
  const html = join(site, 'shadow/var/www/html');
  mkdirSync(join(html, 'deep/er/est'), { recursive: true });
  mkdirSync(join(html, 'empty'));
  writeFileSync(join(html, 'index.html'), 'x'.repeat(1000));
  writeFileSync(join(html, 'new\nline.txt'), 'ab');
  writeFileSync(Buffer.from(`${html}/latin1-\xff\xfe.bin`, 'latin1'), Buffer.alloc(4096));
  writeFileSync(join(html, 'deep/er/est/a'), 'a'.repeat(12345));
  linkSync(join(html, 'index.html'), join(html, 'hard-link.html'));
  symlinkSync('/etc', join(html, 'to-etc')); // a directory outside: not walked
  symlinkSync('index.html', join(html, 'to-index'));
  symlinkSync('nowhere', join(html, 'dangling'));
  await run(cmd('mkfifo', [join(html, 'fifo')]));
  mkdirSync(join(site, 'info'));
  writeFileSync(join(site, 'info/apache'), 'enabled = 1\n');
  const paths = [join(site, 'shadow'), join(site, 'info'), join(html, 'index.html'), join(site, 'missing')];

  const found = { entries: 0, bytes: 0 };
  for (const p of paths.slice(0, 3)) {
    found.entries += (await run(cmd('find', ['-P', p, '-printf', '.']))).stdout.length;
    found.bytes += (await run(cmd('find', ['-P', p, '-type', 'f', '-printf', '%s\\n']))).stdout.split('\n').filter(Boolean).reduce((n, s) => n + Number(s), 0);
  }
  expect(found.entries).toBeGreaterThan(15);
  expect(countStaged(paths)).toEqual(found);
  expect(countStaged([join(site, 'missing')])).toEqual({ entries: 0, bytes: 0 });
});
