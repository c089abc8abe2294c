import { cpSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { restoreAcls } from '../../lib/engine/acl-restore.js';
import { withSymlinksParked } from '../../lib/restore/apply.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

// duplicity keeps no ACLs: a sidecar (getfacl of the live site) travels with the backup and is
// applied to the staged tree by path. The sidecar and the files are two walks of a live site at
// two moments; a tenant who had `x/sub/secret` (a file with an ACL for itself) in one and `x` as a
// symlink to a root directory in the other would get root's setfacl to follow the staged symlink.
// Real getfacl output, a real zstd sidecar, a real victim directory.

const base = mkdtempSync(join(tmpdir(), 'acl-park-'));
const TENANT = 1001;

afterAll(() => rmSync(base, { recursive: true, force: true }));

const acl = async (path: string): Promise<string> => (await run(cmd('getfacl', ['-c', '-n', '-p', path]))).stdout;

describe('the ACL sidecar applied to a staged tree', () => {
  test('a staged symlink where the sidecar saw a directory: without parking root follows it; parked, the victim keeps its ACL', async () => {
    // The site as the sidecar saw it: x/ a directory, x/secret with an ACL for the tenant.
    const site = join(base, 'orig/site1');
    mkdirSync(join(site, 'x/sub'), { recursive: true });
    writeFileSync(join(site, 'x/sub/secret'), 'tenant\n');
    writeFileSync(join(site, 'page'), 'page\n');
    await run(cmd('setfacl', ['-m', `user:${TENANT}:rw`, join(site, 'x/sub/secret'), join(site, 'page')]));
    const text = (await run(cmd('getfacl', ['-R', '-p', '-n', '-s', '-P', '--', site]))).stdout;
    expect(text).toContain(`user:${TENANT}:rw-`);
    const sidecar = join(base, 'fs-acls.zst');
    writeFileSync(join(base, 'fs-acls.txt'), text);
    await run(cmd('zstd', ['-q', '-o', sidecar, join(base, 'fs-acls.txt')]));

    // The staged copy as the files' walk saw it: x a symlink to a root directory.
    const victimOf = (name: string): string => {
      const v = join(base, name);
      mkdirSync(join(v, 'sub'), { recursive: true });
      writeFileSync(join(v, 'sub/secret'), 'root\n', { mode: 0o600 });
      return v;
    };
    const stage = (name: string, victim: string): string => {
      const dir = join(base, name);
      const staged = join(dir, site);
      mkdirSync(staged, { recursive: true });
      cpSync(join(site, 'page'), join(staged, 'page'));
      symlinkSync(victim, join(staged, 'x'));
      return dir;
    };

    // The premise, on the engine's restoreAcls alone: root's setfacl goes through the symlink.
    const exposed = victimOf('victim-exposed');
    const s1 = stage('stage-exposed', exposed);
    await restoreAcls(s1, sidecar);
    expect(await acl(join(exposed, 'sub/secret'))).toContain(`user:${TENANT}:rw-`);

    const victim = victimOf('victim');
    const before = await acl(join(victim, 'sub/secret'));
    const s2 = stage('stage', victim);
    const result = await withSymlinksParked([join(s2, site)], join(s2, 'parked'), () => restoreAcls(s2, sidecar));
    expect(await acl(join(victim, 'sub/secret'))).toBe(before);
    expect(readFileSync(join(victim, 'sub/secret'), 'utf8')).toBe('root\n');
    // The rest of the sidecar still applied, and the symlink is back as it was.
    expect(await acl(join(s2, site, 'page'))).toContain(`user:${TENANT}:rw-`);
    expect(result.missingAcl).toBe(1);
    expect(readlinkSync(join(s2, site, 'x'))).toBe(victim);
  });
});
