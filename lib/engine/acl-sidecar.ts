import { createReadStream, createWriteStream, writeFileSync } from 'node:fs';
import { lstat, mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fsyncDir, tempNameFor } from '../atomic-file.js';
import { compressionSuffix, compressorCommand, decompressorCommand, resolveCompression, sniffCompression } from '../dumps/compress.js';
import { EngineError, MissingDependencyError } from '../errors.js';
import { cmd, type Command } from '../run/command.js';
import { pipeToFile, type StageResult } from '../run/pipeline.js';
import { run } from '../run/run.js';
import { whichSystem } from '../run/which.js';

/**
 * Duplicity 0.8 restores owner, mode and mtime but drops POSIX ACLs and xattrs, which on ApisCP
 * hold Fortification and the overlay's `trusted.overlay.*` markers. Before such a backup we dump
 * them (`getfacl`, `getfattr`) into one compressed file in the dumps dir, so they travel inside the
 * backup; after a restore, `apiscp-backup restore acls --from DIR` puts them back.
 *
 * File format: two compressed frames back to back (zstd and gzip both decompress concatenations):
 * the `getfacl -R -p -n -s -P` text, then the `getfattr -R -d -e hex -h -P` text. Both are blocks
 * starting `# file: /abs/path` (names escaped as \ooo by the tools: we keep them escaped); a
 * getfacl block always continues with `# owner:`, which is how the restore tells them apart.
 */

export const SIDECAR_BASENAME = 'fs-acls';

/** The compressor the dumps use: zstd when installed (faster, smaller), else gzip. */
export function sidecarCompression(): 'zstd' | 'gzip' {
  return resolveCompression('auto') === 'zstd' ? 'zstd' : 'gzip';
}

/** `fs-acls.zst` or `fs-acls.gz`: the name pre-backup writes into the dumps dir. */
export function sidecarFileName(compression = sidecarCompression()): string {
  return `${SIDECAR_BASENAME}${compressionSuffix(compression)}`;
}

export interface SidecarResult {
  readonly file: string;
  readonly bytes: number;
  readonly compression: 'zstd' | 'gzip';
  /** Files that vanished while we walked (a live site): not fatal. */
  readonly warnings: string[];
}

/** `-m` regex: every namespace but `system.` (POSIX ACLs come from getfacl, in readable form). */
const XATTR_MATCH = '^(user|trusted|security)\\.';

export function getfaclArgs(sources: readonly string[]): string[] {
  // -s: files with only owner/group/other entries are covered by the mode duplicity keeps.
  // -n: numeric ids (site users exist in the site's passwd, not the host's). -P: no symlinks.
  return ['-R', '-p', '-n', '-s', '-P', '--', ...sources];
}

export function getfattrArgs(sources: readonly string[]): string[] {
  return ['-R', '-P', '-h', '-d', '-m', XATTR_MATCH, '-e', 'hex', '--absolute-names', '--', ...sources];
}

export async function writeAclSidecar(sources: readonly string[], outFile: string): Promise<SidecarResult> {
  const compression = sidecarCompression();
  for (const tool of ['getfacl', 'getfattr']) {
    if (!whichSystem(tool)) throw new MissingDependencyError(tool, tool === 'getfacl' ? 'acl' : 'attr', tool === 'getfacl' ? 'acl' : 'attr');
  }
  // The dumps dir (where outFile goes) has nothing worth keeping and would list our temp files.
  const outDir = dirname(outFile);
  const existing: string[] = [];
  for (const s of sources) {
    if (outDir === s || outDir.startsWith(s.endsWith('/') ? s : s + '/')) continue;
    if (await lstat(s).then(() => true, () => false)) existing.push(s);
  }
  // Two compressed frames in one file (zstd and gzip both read concatenated frames as one
  // stream): `getfacl | zstd`, then `getfattr | zstd` appended. Streamed through kernel pipes:
  // a server with millions of inodes produces hundreds of MB of text.
  const tmp = tempNameFor(outFile);
  const second = `${tmp}-xattr`;
  const warnings: string[] = [];
  const compressor = compressorCommand(compression)!;
  try {
    if (existing.length === 0) writeFileSync(tmp, '', { mode: 0o600 });
    else {
      // Both walks at once: each is one core of stat/getxattr calls (measured, bench:dumps).
      await Promise.all([
        pipeToFile([cmd('getfacl', getfaclArgs(existing)), compressor], tmp, { tolerate: vanished(warnings), fsync: false }),
        pipeToFile([cmd('getfattr', getfattrArgs(existing)), compressor], second, { tolerate: vanished(warnings), fsync: false }),
      ]);
      await pipeline(createReadStream(second), createWriteStream(tmp, { flags: 'a' }));
      const h = await open(tmp, 'r');
      await h.sync().finally(() => h.close());
    }
    await rename(tmp, outFile);
    fsyncDir(outDir);
    return { file: outFile, bytes: (await stat(outFile)).size, compression, warnings };
  } finally {
    for (const f of [tmp, second]) await rm(f, { force: true });
  }
}

/**
 * getfacl/getfattr exit 1 when a file disappears mid-walk (a live site); the rest of their output
 * is complete, so that is a warning. Anything else fails the sidecar.
 */
function vanished(warnings: string[]): (stage: StageResult, index: number) => boolean {
  return (stage, index) => {
    const lines = stage.stderrTail.split('\n').filter(Boolean);
    const ok = index === 0 && stage.exitCode === 1 && lines.length > 0 && lines.every((l) => /No such file or directory$/.test(l));
    if (ok) warnings.push(...lines);
    return ok;
  };
}

export interface RestoreAclsResult {
  readonly sidecar: string;
  readonly aclFiles: number;
  readonly xattrFiles: number;
  /** Paths in the sidecar that the restored tree does not have (a partial restore). */
  readonly warnings: string[];
}

/**
 * Re-apply a sidecar to a restored tree. Paths in the sidecar are absolute source paths; engines
 * restore `/x/y` to `DIR/x/y`, so we strip the leading `/` and run setfacl/setfattr in DIR.
 */
export async function restoreAcls(fromDir: string, sidecarPath?: string): Promise<RestoreAclsResult> {
  const sidecar = sidecarPath ?? (await findSidecar(fromDir));
  if (!sidecar) throw new EngineError(`no ${SIDECAR_BASENAME}.zst/.gz found under ${fromDir}: pass the sidecar path`, 'duplicity', { fromDir });
  const head = Buffer.alloc(4);
  const fh = await open(sidecar, 'r');
  const { bytesRead } = await fh.read(head, 0, 4, 0);
  await fh.close();
  const work = await mkdtemp(join(tmpdir(), 'apiscp-acls-'));
  try {
    const plain = join(work, 'plain');
    if (bytesRead === 0) return { sidecar, aclFiles: 0, xattrFiles: 0, warnings: [] };
    const packed = sniffCompression(head);
    if (packed === 'none') throw new EngineError(`${sidecar}: not a zstd or gzip file`, 'duplicity', { file: sidecar });
    await pipeToFile([decompressorCommand(packed, sidecar)], plain, { fsync: false });
    const aclText = join(work, 'acl.txt');
    const xattrText = join(work, 'xattr.txt');
    const { acl, xattr } = await splitAndRewrite(plain, aclText, xattrText);
    const warnings: string[] = [];
    // ACLs and the other xattrs are separate attributes: both tools at once.
    await Promise.all([
      restoreWith(cmd('setfacl', [`--restore=${aclText}`], { cwd: fromDir }), warnings),
      restoreWith(cmd('setfattr', [`--restore=${xattrText}`], { cwd: fromDir }), warnings),
    ]);
    return { sidecar, aclFiles: acl, xattrFiles: xattr, warnings };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Stream the plain text into the two restore files, with paths made relative to the restore
 * dir. Both tools separate their blocks with a blank line and start each with `# file: `; the
 * work is done on whole chunks of blocks (indexOf and one regex per chunk), not per line: the
 * line-by-line version cost 3.8× the raw setfacl/setfattr on 200,000 files (bench:dumps).
 * latin1 keeps every byte as it was (the tools escape odd names as \ooo anyway).
 */
async function splitAndRewrite(plain: string, aclOut: string, xattrOut: string): Promise<{ acl: number; xattr: number }> {
  const acl = createWriteStream(aclOut, { mode: 0o600, encoding: 'latin1' });
  const xattr = createWriteStream(xattrOut, { mode: 0o600, encoding: 'latin1' });
  const counts = { acl: 0, xattr: 0 };
  const write = async (stream: typeof acl, text: string): Promise<void> => {
    if (text !== '' && !stream.write(relativeHeaders(text), 'latin1')) await new Promise<void>((r) => stream.once('drain', () => r()));
  };
  const flush = async (blocks: string[]): Promise<void> => {
    const parts = { acl: [] as string[], xattr: [] as string[] };
    for (let block of blocks) {
      block = block.replace(/^\n+/, '');
      if (!block.startsWith('# file: ')) continue;
      // The line after the header decides which tool wrote the block.
      const eol = block.indexOf('\n');
      if (eol === -1) continue;
      const which = block.startsWith('# owner: ', eol + 1) ? 'acl' : 'xattr';
      counts[which]++;
      parts[which].push(block, '\n\n');
    }
    await write(acl, parts.acl.join(''));
    await write(xattr, parts.xattr.join(''));
  };
  let rest = '';
  for await (const chunk of createReadStream(plain, { encoding: 'latin1', highWaterMark: 1 << 20 })) {
    const text = rest + (chunk as string);
    const cut = text.lastIndexOf('\n\n');
    if (cut === -1) {
      rest = text;
      continue;
    }
    rest = text.slice(cut + 2);
    await flush(text.slice(0, cut).split('\n\n'));
  }
  await flush(rest.split('\n\n'));
  await Promise.all([acl, xattr].map((s) => new Promise<void>((r, j) => s.end((e?: Error | null) => (e ? j(e) : r())))));
  return counts;
}

/** `# file: /abs/path` → `# file: abs/path` (`.` for the root itself), for a whole chunk at once. */
function relativeHeaders(text: string): string {
  return text.replace(/^# file: \/+$/gm, '# file: .').replace(/^# file: \/+/gm, '# file: ');
}

/** Missing files are warnings (the admin may have restored only part of the tree). */
async function restoreWith(command: Command, warnings: string[]): Promise<void> {
  const r = await run(command, { okExitCodes: [1] });
  if (r.exitCode === 0) return;
  const lines = r.stderr.split('\n').filter(Boolean);
  if (lines.length > 0 && lines.every((l) => /No such file or directory$/.test(l))) {
    warnings.push(...lines);
    return;
  }
  throw new EngineError(`${r.command} failed: ${lines.slice(-3).join('; ')}`, 'duplicity', { stderr: lines.slice(-20) });
}

/** The newest sidecar below `dir`, without wandering into the (large) restored site trees. */
async function findSidecar(dir: string): Promise<string | undefined> {
  let best: { path: string; mtime: number } | undefined;
  const walk = async (d: string, depth: number): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory() && depth < 12 && !p.endsWith('/home/virtual')) await walk(p, depth + 1);
      else if (e.isFile() && /^fs-acls\.(zst|gz)$/.test(basename(p))) {
        const mtime = (await stat(p)).mtimeMs;
        if (!best || mtime > best.mtime) best = { path: p, mtime };
      }
    }
  };
  await walk(dir, 0);
  return best?.path;
}
