import { createReadStream, createWriteStream, writeFileSync } from 'node:fs';
import { lstat, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fsyncDir, tempNameFor } from '../atomic-file.js';
import { compressionSuffix, compressorCommand, resolveCompression } from '../dumps/compress.js';
import { cmd, type Command } from '../proc/command.js';
import { pipeToFile } from '../proc/pipeline.js';
import type { Ended } from '../proc/lifecycle.js';
import { resolveTool } from '../proc/which.js';

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

export function getfaclArgs(sources: readonly string[], recursive = true): string[] {
  // -s: files with only owner/group/other entries are covered by the mode duplicity keeps.
  // -n: numeric ids (site users exist in the site's passwd, not the host's). -P: no symlinks.
  return [...(recursive ? ['-R'] : []), '-p', '-n', '-s', '-P', '--', ...sources];
}

export function getfattrArgs(sources: readonly string[], recursive = true): string[] {
  return [...(recursive ? ['-R'] : []), '-P', '-h', '-d', '-m', XATTR_MATCH, '-e', 'hex', '--absolute-names', '--', ...sources];
}

/**
 * The walk that covers `sources` but nothing in `excludes` (paths.exclude, expanded): getfacl and
 * getfattr have no exclude option, so a source with an excluded path inside is split into the
 * directories on the way to it (`shallow`, their own entry only) and every sibling (`deep`,
 * recursive). Symlinks are never followed. Excludes that are patterns (`*.inprogress`) only
 * matter inside the dumps dir, which the sidecar never walks.
 */
export async function walkPlan(sources: readonly string[], excludes: readonly string[]): Promise<{ shallow: string[]; deep: string[] }> {
  const concrete = excludes.filter((e) => !/[*?[]/.test(e)).map((e) => e.replace(/\/+$/, ''));
  const shallow: string[] = [];
  const deep: string[] = [];
  const visit = async (path: string): Promise<void> => {
    if (concrete.some((e) => path === e || path.startsWith(e + '/'))) return;
    if (!concrete.some((e) => e.startsWith(path + '/'))) {
      deep.push(path);
      return;
    }
    shallow.push(path);
    const children = await readdir(path, { withFileTypes: true }).catch(() => []);
    for (const c of children.sort((a, b) => (a.name < b.name ? -1 : 1))) await visit(join(path, c.name));
  };
  for (const s of sources) await visit(s);
  return { shallow, deep };
}

/** Argument lists kept well under the kernel's limit (ARG_MAX is 2 MB, one path may be 4 KB). */
function batches(paths: readonly string[], maxBytes = 256 * 1024): string[][] {
  const out: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const p of paths) {
    if (current.length && size + p.length + 1 > maxBytes) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(p);
    size += p.length + 1;
  }
  if (current.length) out.push(current);
  return out;
}

export async function writeAclSidecar(sources: readonly string[], outFile: string, excludes: readonly string[] = []): Promise<SidecarResult> {
  const compression = sidecarCompression();
  const getfacl = resolveTool('getfacl', 'acl');
  const getfattr = resolveTool('getfattr', 'attr');
  // The dumps dir (where outFile goes) has nothing worth keeping and would list our temp files.
  const outDir = dirname(outFile);
  const existing: string[] = [];
  for (const s of sources) {
    if (outDir === s || outDir.startsWith(s.endsWith('/') ? s : s + '/')) continue;
    if (await lstat(s).then(() => true, () => false)) existing.push(s);
  }
  const { shallow, deep } = await walkPlan(existing, excludes);
  // One compressed frame per command, back to back in one file (zstd and gzip both read
  // concatenated frames as one stream): getfacl first, then getfattr. Streamed through kernel
  // pipes: a server with millions of inodes produces hundreds of MB of text.
  const commands: Command[] = [
    ...batches(deep).map((b) => cmd(getfacl, getfaclArgs(b))),
    ...batches(shallow).map((b) => cmd(getfacl, getfaclArgs(b, false))),
    ...batches(deep).map((b) => cmd(getfattr, getfattrArgs(b))),
    ...batches(shallow).map((b) => cmd(getfattr, getfattrArgs(b, false))),
  ];
  const tmp = tempNameFor(outFile);
  const part = `${tmp}-part`;
  const warnings: string[] = [];
  const compressor = compressorCommand(compression)!;
  try {
    writeFileSync(tmp, '', { mode: 0o600 });
    // Two walks at once (each is one core of stat/getxattr calls, measured with bench:dumps):
    // the getfacl batches and the getfattr batches side by side, each into its own part,
    // then the parts appended in order.
    const parts = commands.map((_, i) => `${part}${i}`);
    const half = commands.findIndex((c) => c.file === getfattr);
    const run = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) await pipeToFile([commands[i]!, compressor], parts[i]!, { tolerate: vanished(warnings), fsync: false });
    };
    try {
      const split = half === -1 ? commands.length : half;
      await Promise.all([run(0, split), run(split, commands.length)]);
      for (const p of parts) await pipeline(createReadStream(p), createWriteStream(tmp, { flags: 'a' }));
    } finally {
      for (const p of parts) await rm(p, { force: true });
    }
    const h = await open(tmp, 'r');
    await h.sync().finally(() => h.close());
    await rename(tmp, outFile);
    fsyncDir(outDir);
    return { file: outFile, bytes: (await stat(outFile)).size, compression, warnings };
  } finally {
    for (const f of [tmp, part]) await rm(f, { force: true });
  }
}

/**
 * getfacl/getfattr exit 1 when a file disappears mid-walk (a live site); the rest of their output
 * is complete, so that is a warning. Anything else fails the sidecar.
 */
function vanished(warnings: string[]): (stage: Ended, index: number) => boolean {
  return (stage, index) => {
    const lines = stage.stderrTail.split('\n').filter(Boolean);
    const ok = index === 0 && stage.exitCode === 1 && lines.length > 0 && lines.every((l) => /No such file or directory$/.test(l));
    if (ok) warnings.push(...lines);
    return ok;
  };
}

