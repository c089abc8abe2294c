import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { exitClasses } from '../proc/exit-status.js';

/**
 * A small but nasty ApisCP layout for engine tests, the demo and benchmarks: everything a backup
 * of /home/virtual/siteN can get wrong (owners without passwd entries, POSIX ACLs of
 * Fortification, user.* and trusted.overlay.* xattrs, overlay whiteouts, symlinks named after
 * domains, raw database files that must stay out). Needs root (chown, mknod, trusted.*).
 */

export interface TreeSite {
  readonly id: string;
  readonly domain: string;
  readonly admin: string;
  readonly uid: number;
}

export interface TreeInfo {
  readonly root: string;
  readonly home: string;
  readonly sites: readonly TreeSite[];
  /** Paths relative to `root` that a backup must contain (sources and everything below them). */
  readonly included: readonly string[];
  /** Paths relative to `root` that a backup must NOT contain. */
  readonly excluded: readonly string[];
  /** Overlay whiteouts (char 0:0) among `included`: engines differ in keeping them. */
  readonly whiteouts: readonly string[];
  /** Files with `user.*` xattrs among `included`. */
  readonly xattrFiles: readonly string[];
}

/** Numeric ids only: ApisCP sites' users exist in the site's own passwd, not in the host's. */
const WWW = 33; // www-data on Debian (apache on RHEL is 48): a user that exists here

/**
 * `uidBase`: site N's owner is uidBase + N. A test that gives those uids a name on this host (to run
 * a process as the tenant) takes its own base: Bacula stores an ACL entry by name when the uid has
 * one, so a name that comes and goes under another test's backup would change what that test gets back.
 */
export async function buildApiscpTree(root: string, opts: { sites?: number; uidBase?: number } = {}): Promise<TreeInfo> {
  const home = join(root, 'home/virtual');
  const included: string[] = [];
  const excluded: string[] = [];
  const whiteouts: string[] = [];
  const xattrFiles: string[] = [];
  const sites: TreeSite[] = [];
  const rel = (p: string): string => p.slice(root.length + 1);

  const file = async (path: string, data: string | Buffer, mode: number, uid: number, gid = uid): Promise<string> => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data, { mode });
    await chownMod(path, uid, gid, mode);
    return rel(path);
  };
  const dir = async (path: string, mode: number, uid: number, gid = uid): Promise<string> => {
    await mkdir(path, { recursive: true });
    await chownMod(path, uid, gid, mode);
    return rel(path);
  };

  for (let n = 1; n <= (opts.sites ?? 2); n++) {
    const id = `site${n}`;
    const site: TreeSite = { id, domain: `example${n}.test`, admin: `admin${n}`, uid: (opts.uidBase ?? 1000) + n };
    sites.push(site);
    const s = join(home, id);
    const { uid } = site;
    const shadow = join(s, 'shadow');
    const html = join(shadow, 'var/www/html');
    // Sources (and parents inside them) first: listed so snapshots compare them too.
    included.push(await dir(s + '/shadow', 0o755, 0), await dir(shadow + '/var', 0o755, 0), await dir(shadow + '/var/www', 0o755, 0));
    included.push(await dir(html, 0o2775, uid, WWW));
    included.push(await file(join(html, 'index.html'), `<h1>${site.domain}</h1>\n`, 0o644, uid));
    included.push(await file(join(html, 'logo.bin'), binary(n, 70_000), 0o640, uid, WWW));
    included.push(await file(join(html, 'empty'), '', 0o600, uid));
    included.push(await file(join(html, 'name with space.txt'), 'spaces\n', 0o644, uid));
    included.push(await file(join(html, 'new\nline.txt'), 'newline in the name\n', 0o644, uid));
    included.push(await dir(join(html, 'deep'), 0o750, uid), await dir(join(html, 'deep/a'), 0o755, uid), await dir(join(html, 'deep/a/b'), 0o700, 1500));
    included.push(await file(join(html, 'deep/a/b/c.txt'), 'nested\n', 0o400, 1500, 1501));
    await symlink('index.html', join(html, 'home.html'));
    included.push(rel(join(html, 'home.html')));
    // A whiteout: the file was deleted in the site although FILESYSTEMTEMPLATE still has it.
    const wh = join(shadow, 'var/www/html/deep/removed.txt');
    await run(cmd('mknod', [wh, 'c', '0', '0']));
    included.push(rel(wh));
    whiteouts.push(rel(wh));
    // An opaque directory hides the template's directory of the same name.
    await run(cmd('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(html, 'deep')]));
    // Fortification: access + default ACLs on directories, an access ACL on one file.
    for (const d of [html, join(html, 'deep')]) {
      await run(cmd('setfacl', ['-m', `user:${uid}:rwx`, '-d', '-m', `user:${uid}:rwx,user:${WWW}:rwx`, d]));
    }
    await run(cmd('setfacl', ['-m', `user:${WWW}:rw-`, join(html, 'index.html')]));
    for (const [f, name, value] of [
      [join(html, 'index.html'), 'user.origin', `site ${n}`],
      [join(html, 'logo.bin'), 'user.checksum', '0xdeadbeef00ff'],
    ] as const) {
      await run(cmd('setfattr', ['-n', name, '-v', value, f]));
      xattrFiles.push(rel(f));
    }
    const userHome = join(shadow, 'home', site.admin);
    included.push(await dir(join(shadow, 'home'), 0o755, 0), await dir(userHome, 0o700, uid));
    included.push(await file(join(userHome, '.bashrc'), 'export EDITOR=vi\n', 0o600, uid));

    // Raw database files: inconsistent while the server runs, never backed up.
    excluded.push(await file(join(shadow, 'var/lib/mysql', `${id}_wp/wp_posts.ibd`), binary(n + 10, 4096), 0o660, 27));
    excluded.push(rel(join(shadow, 'var/lib')));

    const info = join(s, 'info');
    included.push(await dir(info, 0o755, 0), await dir(join(info, 'current'), 0o755, 0));
    included.push(await file(join(info, 'current/siteinfo'), `[siteinfo]\ndomain = ${site.domain}\nadmin_user = ${site.admin}\nadmin = ${uid}\nenabled = 1\n`, 0o600, 0));
    included.push(await file(join(info, 'current/apache'), `enabled = 1\n`, 0o644, 0));

    // The overlay mount point and the domain/admin symlinks must not produce a second copy.
    excluded.push(await file(join(s, 'fst/var/www/html/index.html'), 'merged view\n', 0o644, uid));
    excluded.push(rel(join(s, 'fst')));
    for (const alias of [site.domain, site.admin]) {
      await symlink(id, join(home, alias));
      excluded.push(rel(join(home, alias)));
    }
  }
  excluded.push(await file(join(home, 'FILESYSTEMTEMPLATE/siteinfo/etc/passwd'), 'root:x:0:0::/root:/bin/bash\n', 0o644, 0));
  excluded.push(rel(join(home, 'FILESYSTEMTEMPLATE')));
  // Recommended extras of the ApisCP docs, and neighbours the globs must not catch.
  included.push(await file(join(root, 'var/log/mailer_table'), 'alias@example1.test site1\n', 0o640, 0));
  included.push(await file(join(root, 'var/log/mailer_table-20261120.gz'), gzipSync('alias@example1.test site1\n'), 0o640, 0));
  included.push(await file(join(root, 'var/lib/mysql/mysql-grants'), 'GRANT ALL ON *.* TO root;\n', 0o600, 0));
  included.push(await dir(join(root, 'var/lib/pgsql/15/backups'), 0o700, 26));
  included.push(await file(join(root, 'var/lib/pgsql/15/backups/x.sql'), 'CREATE ROLE appldb;\n', 0o600, 26));
  excluded.push(await file(join(root, 'var/lib/mysql/ibdata1'), binary(99, 8192), 0o660, 27));
  excluded.push(await file(join(root, 'var/log/messages'), 'syslog\n', 0o600, 0));
  return { root, home, sites, included, excluded, whiteouts, xattrFiles };
}

async function chownMod(path: string, uid: number, gid: number, mode: number): Promise<void> {
  // chown clears setgid bits: chmod afterwards. Through lib/proc like every subprocess.
  await run(cmd('chown', ['-h', `${uid}:${gid}`, path]));
  await run(cmd('chmod', [mode.toString(8), path]));
}

/** Deterministic bytes (all 256 values) so a restore that mangles binary data shows up. */
function binary(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export interface EntrySnapshot {
  readonly type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket' | 'missing';
  readonly mode: string;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly sha256?: string;
  readonly symlinkTarget?: string;
  readonly rdev?: number;
  /** `getfacl -cp --access` lines, without comments (symlinks and devices: undefined). */
  readonly acl?: string;
  readonly defaultAcl?: string;
  /** user.* and trusted.overlay.* attributes, hex-encoded, sorted by name. */
  readonly xattrs: Readonly<Record<string, string>>;
}

/** What a restore must reproduce, per path relative to `dir`. Missing paths are reported as such. */
export async function snapshotTree(dir: string, relPaths: readonly string[]): Promise<Map<string, EntrySnapshot>> {
  const out = new Map<string, EntrySnapshot>();
  // A few at a time: each entry costs three subprocesses.
  const queue = [...relPaths];
  const worker = async (): Promise<void> => {
    for (let r = queue.shift(); r !== undefined; r = queue.shift()) out.set(r, await snapshotEntry(join(dir, r)));
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return new Map([...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

async function snapshotEntry(path: string): Promise<EntrySnapshot> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return { type: 'missing', mode: '', uid: -1, gid: -1, size: 0, xattrs: {} };
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';
  const base = { type, mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), uid: st.uid, gid: st.gid } as const;
  const xattrs = await readXattrs(path);
  if (type === 'symlink') return { ...base, size: 0, symlinkTarget: await readlink(path), xattrs };
  if (type === 'char' || type === 'block') return { ...base, size: 0, rdev: st.rdev, xattrs };
  const acl = await getfacl(path, '--access');
  const defaultAcl = type === 'dir' ? await getfacl(path, '--default') : undefined;
  const sha256 = type === 'file' ? createHash('sha256').update(await readFile(path)).digest('hex') : undefined;
  return { ...base, size: type === 'file' ? st.size : 0, sha256, acl, defaultAcl, xattrs };
}

async function getfacl(path: string, which: '--access' | '--default'): Promise<string> {
  const r = await run(cmd('getfacl', ['-c', '-p', '-n', which, path]));
  return r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).join('\n');
}

async function readXattrs(path: string): Promise<Record<string, string>> {
  const r = await run(cmd('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', path]), { exitClass: exitClasses({ ok: [1] }) });
  const attrs: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^((?:user|trusted\.overlay)\.[^=]+)=(.*)$/.exec(line);
    if (m) attrs[m[1]!] = m[2]!;
  }
  return Object.fromEntries(Object.entries(attrs).sort(([a], [b]) => a.localeCompare(b)));
}
