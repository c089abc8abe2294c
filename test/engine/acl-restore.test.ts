/**
 * `restore acls` on real trees with the real tools: the sidecar written by getfacl/getfattr
 * (writeAclSidecar), applied by setfacl/setfattr, checked with getfacl/getfattr again. Names
 * that need the tools' \ooo escapes, files missing among many, a subtree, a damaged sidecar.
 * Needs root (setfacl --restore sets owners; trusted.* would need it too) and the acl/attr tools.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SidecarBlocks } from '../../lib/engine/acl-blocks.js';
import { restoreAcls } from '../../lib/engine/acl-restore.js';
import { writeAclSidecar } from '../../lib/engine/acl-sidecar.js';
import { BackupError, EngineError } from '../../lib/errors.js';

const work = mkdtempSync(join(tmpdir(), 'acl-restore-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const b = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s) : s);
const at = (dir: string, rel: Buffer): Buffer => Buffer.concat([b(dir + '/'), rel]);

/** Names the tools must escape (newline, tab, backslash, a byte that is not UTF-8) or that are just awkward. */
const HOSTILE: Buffer[] = [b('sp ace.txt'), b('new\nline.txt'), b('tab\there'), b('back\\slash'), Buffer.from([0x6c, 0x61, 0x74, 0xe9]), b('ünïcode'), b('-dash'), b('# file: x')];

/** The files (relative, raw bytes) and directories of a tree; created empty, then given ACLs by setfacl -R. */
function makeTree(root: string, dirs: number, filesPerDir: number, extra: Buffer[] = [], dirName = (d: number): Buffer => b(`d${d}`)): { dirs: Buffer[]; files: Buffer[] } {
  mkdirSync(root, { recursive: true });
  const out = { dirs: [] as Buffer[], files: [] as Buffer[] };
  for (let d = 0; d < dirs; d++) {
    const dir = dirName(d);
    mkdirSync(at(root, dir));
    out.dirs.push(dir);
    for (let f = 0; f < filesPerDir; f++) out.files.push(Buffer.concat([dir, b(`/f${f}`)]));
  }
  out.files.push(...extra);
  for (const f of out.files) writeFileSync(at(root, f), '');
  return out;
}

/** The same entries, bare (no ACLs, no xattrs), as an engine restores them under `target`. */
function bareCopy(target: string, source: string, tree: { dirs: Buffer[]; files: Buffer[] }, skip: (rel: Buffer) => boolean = () => false): void {
  const base = join(target, source);
  mkdirSync(base, { recursive: true });
  for (const d of tree.dirs) if (!skip(d)) mkdirSync(at(base, d));
  for (const f of tree.files) if (!skip(f)) writeFileSync(at(base, f), '');
}

/**
 * getfacl/getfattr of a whole tree, run inside it (relative names): what must come back, byte for
 * byte. As sorted blocks: two directories need not list the same names in the same order.
 */
async function attrsOf(dir: string): Promise<{ acl: string[]; xattr: string[] }> {
  const acl = await execa('getfacl', ['-R', '-n', '-s', '-P', '.'], { cwd: dir, encoding: 'buffer' });
  const xattr = await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '.'], { cwd: dir, encoding: 'buffer' });
  const blocks = (out: Uint8Array): string[] => Buffer.from(out).toString('latin1').split('\n\n').filter(Boolean).sort();
  return { acl: blocks(acl.stdout), xattr: blocks(xattr.stdout) };
}

/** The escaped form getfacl/setfattr use in `# file:` lines (octal for what is not printable ASCII, and `\`). */
function escapeName(raw: Buffer): string {
  return [...raw].map((c) => (c === 0x5c || c < 0x21 || c > 0x7e ? `\\${c.toString(8).padStart(3, '0')}` : String.fromCharCode(c))).join('');
}

async function setXattrs(root: string, rels: readonly Buffer[]): Promise<void> {
  const text = rels.map((r, i) => `# file: ${escapeName(r)}\nuser.tag=0x${Buffer.from(`t${i}`).toString('hex')}\n`).join('\n');
  writeFileSync(join(work, 'xattrs.txt'), text);
  await execa('setfattr', [`--restore=${join(work, 'xattrs.txt')}`], { cwd: root });
}

describe('restore acls: hostile names, into another directory', () => {
  const source = join(work, 'hostile/src');
  const target = join(work, 'hostile/restore');
  let tree: { dirs: Buffer[]; files: Buffer[] };
  let sidecar: string;
  beforeAll(async () => {
    // The second directory's name needs escapes too: blocks are kept or dropped by their directory.
    tree = makeTree(source, 2, 3, HOSTILE, (d) => (d === 0 ? b('d0') : Buffer.concat([b('dir\nwith \\odd'), Buffer.from([0xe9])])));
    await execa('setfacl', ['-R', '-m', 'u:1001:rwX,g:1002:rX', '--', source]);
    // One file with an ACL of its own, so a mix-up between paths would show.
    await execa('setfacl', ['-m', 'u:1003:r', '--', join(source, 'sp ace.txt')]);
    await setXattrs(source, [...HOSTILE, tree.files[0]!]);
    sidecar = join(work, 'hostile/fs-acls.zst');
    await writeAclSidecar([source], sidecar);
    bareCopy(target, source, tree);
  });

  it('puts back every ACL and xattr, names with newlines, tabs, backslashes and non-UTF-8 bytes included', async () => {
    const r = await restoreAcls(target, sidecar);
    // setfacl -R gave every entry (the root, 2 dirs, 6 + 8 files) an extended ACL; 9 files got a user.tag.
    expect(r).toMatchObject({ aclFiles: 1 + 2 + 6 + HOSTILE.length, xattrFiles: HOSTILE.length + 1, missingAcl: 0, missingXattr: 0, originalRoot: join(work, 'hostile') });
    expect(r.warnings).toEqual([]);
    const want = await attrsOf(source);
    const got = await attrsOf(join(target, source));
    expect(got.acl).toEqual(want.acl);
    expect(got.xattr).toEqual(want.xattr);
    // The comparison covers what it claims: every entry, the escaped names, the odd ACL out.
    expect(want.acl).toHaveLength(1 + 2 + 6 + HOSTILE.length);
    expect(want.acl.join('\n')).toContain('new\\012line.txt');
    expect(want.acl.join('\n')).toContain('user:1003:r--');
    expect(want.xattr).toHaveLength(HOSTILE.length + 1);
  });
});

describe('restore acls: files missing among many, and a subtree', () => {
  const source = join(work, 'many/src');
  let tree: { dirs: Buffer[]; files: Buffer[] };
  let sidecar: string;
  beforeAll(async () => {
    tree = makeTree(source, 4, 150, [b('gone\nwith newline'), b('gone\\134back')]);
    await execa('setfacl', ['-R', '-m', 'u:1001:rwX', '--', source]);
    await setXattrs(source, [b('d0/f1'), b('d1/f1'), b('d2/f7'), b('gone\nwith newline')]);
    sidecar = join(work, 'many/fs-acls.zst');
    await writeAclSidecar([source], sidecar);
  });
  const total = (): number => 1 + 4 + 4 * 150 + 2;

  const holes = ['d0/f5', 'd2/f7', 'gone\nwith newline', 'gone\\134back'];

  it('a few files missing among many (a newline, a backslash in their names): counted and named, not fatal', async () => {
    const target = join(work, 'many/restore-holes');
    bareCopy(target, source, tree, (rel) => holes.includes(rel.toString()));
    const r = await restoreAcls(target, sidecar);
    expect(r).toMatchObject({ aclFiles: total() - holes.length, missingAcl: holes.length, xattrFiles: 2, missingXattr: 2 });
    // setfacl names them raw, setfattr escaped: both read back as the real names, each once.
    expect([...r.warnings].sort()).toEqual(holes.map((h) => `not in the restored tree: ${join(source, h)}`).sort());
  });

  it('a whole directory missing as well: its entries counted without a look-up each, the rest applied', async () => {
    const target = join(work, 'many/restore-nod3');
    bareCopy(target, source, tree, (rel) => holes.includes(rel.toString()) || rel.toString().startsWith('d3'));
    const r = await restoreAcls(target, sidecar);
    // d3 and its 150 files, and the 4 holes.
    expect(r).toMatchObject({ aclFiles: total() - 151 - holes.length, missingAcl: 151 + holes.length, xattrFiles: 2, missingXattr: 2 });
    const missing = r.warnings.map((w) => w.replace(/^not in the restored tree: /, ''));
    expect(missing).toHaveLength(5);
    for (const m of missing) expect(holes.map((h) => join(source, h)).includes(m) || m === join(source, 'd3') || m.startsWith(join(source, 'd3') + '/'), m).toBe(true);
    // What exists got its ACL; the holes stayed holes (setfacl created nothing).
    const f = await execa('getfacl', ['-cpn', join(target, source, 'd2/f8')]);
    expect(f.stdout).toMatch(/^user:1001:rw-$/m);
    expect((await execa('ls', [join(target, source, 'd2')])).stdout.split('\n')).not.toContain('f7');
    expect((await execa('getfattr', ['-d', '--absolute-names', join(target, source, 'd1/f1')])).stdout).toContain('user.tag=');
  });

  it('a subtree (one directory restored): only it and the directories above it are applied', async () => {
    const target = join(work, 'many/restore-sub');
    bareCopy(target, source, { dirs: [b('d1')], files: tree.files.filter((f) => f.toString().startsWith('d1/')) });
    const r = await restoreAcls(target, sidecar);
    // The source root (its directory exists, as the way to d1), d1, its 150 files.
    expect(r).toMatchObject({ aclFiles: 1 + 1 + 150, missingAcl: total() - 152, xattrFiles: 1, missingXattr: 3 });
    const got = await attrsOf(join(target, source, 'd1'));
    const want = await attrsOf(join(source, 'd1'));
    expect(got.acl).toEqual(want.acl);
    expect(want.acl).toHaveLength(151);
  });

  it('a directory that holds none of it: exit 2, naming the directory the sidecar expects', async () => {
    const wrong = join(work, 'many/wrong');
    mkdirSync(join(wrong, 'd0'), { recursive: true });
    writeFileSync(join(wrong, 'd0/f0'), '');
    const err = await restoreAcls(wrong, sidecar).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).exitCode).toBe(2);
    expect((err as Error).message).toContain(`none of the ${total() + 4} paths in ${sidecar} exist under ${wrong}: the sidecar was written for paths under ${join(work, 'many')}`);
    expect((err as Error).message).toContain(`so ${wrong} should contain ${join(wrong, work, 'many')}`);
  });

  it('a truncated sidecar is an error, never a restore that looks complete', async () => {
    const damaged = join(work, 'many/damaged.zst');
    writeFileSync(damaged, readFileSync(sidecar));
    truncateSync(damaged, Math.floor(readFileSync(sidecar).length / 2));
    const target = join(work, 'many/restore-damaged');
    bareCopy(target, source, tree);
    await expect(restoreAcls(target, damaged)).rejects.toThrow(EngineError);
    await expect(restoreAcls(target, damaged)).rejects.toThrow(/damaged or truncated/);
  });

  it('an entry setfacl rejects (not a missing file) fails the restore with its message', async () => {
    const target = join(work, 'many/restore-bad');
    bareCopy(target, source, tree);
    const text = `# file: ${source}/d0/f0\n# owner: 0\n# group: 0\nuser::rw-\nuser:1001:rwz\ngroup::r--\nmask::rw-\nother::r--\n\n`;
    writeFileSync(join(work, 'bad.txt'), text);
    await execa('zstd', ['-qf', join(work, 'bad.txt'), '-o', join(work, 'bad.zst')]);
    await expect(restoreAcls(target, join(work, 'bad.zst'))).rejects.toThrow(/setfacl.*exited with 1/);
  });
});

describe('SidecarBlocks: chunk boundaries anywhere', () => {
  it('gives each tool its own blocks with the paths made relative, however the text is cut', async () => {
    const source = join(work, 'chunks/src');
    makeTree(source, 2, 4, HOSTILE.slice(0, 5));
    await execa('setfacl', ['-R', '-m', 'u:1001:rwX', '--', source]);
    await setXattrs(source, HOSTILE.slice(0, 5));
    const acl = Buffer.from((await execa('getfacl', ['-R', '-p', '-n', '-s', '-P', '--', source], { encoding: 'buffer', stripFinalNewline: false })).stdout);
    const xattr = Buffer.from((await execa('getfattr', ['-R', '-P', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', '--', source], { encoding: 'buffer', stripFinalNewline: false })).stdout);
    const relative = (t: Buffer): string => t.toString('latin1').replace(/^# file: \//gm, '# file: ');
    const text = Buffer.concat([acl, xattr]);
    for (const size of [1, 2, 7, 9, 64, 1000, text.length]) {
      const blocks = new SidecarBlocks(() => true);
      const got = { acl: [] as Buffer[], xattr: [] as Buffer[] };
      const take = (o: { acl: Buffer[]; xattr: Buffer[] }): void => void (got.acl.push(...o.acl.map((x) => Buffer.from(x))), got.xattr.push(...o.xattr.map((x) => Buffer.from(x))));
      for (let i = 0; i < text.length; i += size) take(blocks.push(Buffer.from(text.subarray(i, i + size))));
      take(blocks.end());
      expect(Buffer.concat(got.acl).toString('latin1'), `chunks of ${size}`).toBe(relative(acl));
      expect(Buffer.concat(got.xattr).toString('latin1'), `chunks of ${size}`).toBe(relative(xattr));
      expect(blocks.sent).toEqual({ acl: 1 + 2 + 8 + 5, xattr: 5 });
    }
  });
});
