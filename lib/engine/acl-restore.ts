import { createReadStream, createWriteStream, lstatSync, readdirSync } from 'node:fs';
import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { decompressorCommand, sniffCompression } from '../dumps/compress.js';
import { BackupError, EngineError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { cmd, type Command } from '../run/command.js';
import { pipeToFile } from '../run/pipeline.js';
import { run } from '../run/run.js';
import { resolveTool } from '../run/which.js';
import { SIDECAR_BASENAME } from './acl-sidecar.js';
import { exitClasses } from '../run/exit-status.js';

/**
 * `apiscp-backup restore acls`: put the ACLs and xattrs of a sidecar (acl-sidecar.ts) back onto a
 * restored tree, counting what was applied and what the tree lacks.
 */
export interface RestoreAclsResult {
  readonly sidecar: string;
  /** Paths whose ACLs / xattrs were re-applied (they exist under the restore directory). */
  readonly aclFiles: number;
  readonly xattrFiles: number;
  /** Paths the sidecar holds that the restored tree does not have (a partial restore). */
  readonly missingAcl: number;
  readonly missingXattr: number;
  /** The directory all sidecar paths share on the original server (e.g. /home/virtual). */
  readonly originalRoot: string;
  /** Details on the missing paths (the first few) and tool messages. */
  readonly warnings: string[];
}

/**
 * Re-apply a sidecar to a restored tree. Paths in the sidecar are absolute source paths; engines
 * restore `/x/y` to `DIR/x/y`, so we strip the leading `/` and run setfacl/setfattr in DIR. Only
 * paths that exist under DIR are applied and counted; when none does, DIR is the wrong directory
 * and we say which one the sidecar expects.
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
    if (bytesRead === 0) return { sidecar, aclFiles: 0, xattrFiles: 0, missingAcl: 0, missingXattr: 0, originalRoot: '/', warnings: [] };
    const packed = sniffCompression(head);
    if (packed === 'none') throw new EngineError(`${sidecar}: not a zstd or gzip file`, 'duplicity', { file: sidecar });
    await pipeToFile([decompressorCommand(packed, sidecar)], plain, { fsync: false }); // scratch
    const aclText = join(work, 'acl.txt');
    const xattrText = join(work, 'xattr.txt');
    const counts = await splitAndRewrite(plain, aclText, xattrText, fromDir);
    const held = counts.acl + counts.xattr + counts.missingAcl + counts.missingXattr;
    if (held > 0 && counts.acl + counts.xattr === 0) {
      throw new BackupError(
        `none of the ${held} paths in ${sidecar} exist under ${fromDir}: the sidecar was written for paths under ${counts.originalRoot} ` +
          `(e.g. ${counts.example}), so ${fromDir} should contain ${join(fromDir, counts.originalRoot)}; pass the directory the backup was restored into`,
        ExitCode.USAGE,
        { fromDir, sidecar, originalRoot: counts.originalRoot },
      );
    }
    const warnings: string[] = [...counts.missingExamples.map((p) => `not in the restored tree: ${p}`)];
    // ACLs and the other xattrs are separate attributes: both tools at once.
    await Promise.all([
      counts.acl > 0 ? restoreWith(cmd(resolveTool('setfacl', 'acl'), [`--restore=${aclText}`], { cwd: fromDir }), warnings) : undefined,
      counts.xattr > 0 ? restoreWith(cmd(resolveTool('setfattr', 'attr'), [`--restore=${xattrText}`], { cwd: fromDir }), warnings) : undefined,
    ]);
    return { sidecar, aclFiles: counts.acl, xattrFiles: counts.xattr, missingAcl: counts.missingAcl, missingXattr: counts.missingXattr, originalRoot: counts.originalRoot, warnings };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** getfacl/getfattr write names with \ooo octal escapes: the real bytes, for lstat. */
function unescapePath(escaped: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(escaped, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

interface SplitCounts {
  acl: number;
  xattr: number;
  missingAcl: number;
  missingXattr: number;
  originalRoot: string;
  example: string;
  missingExamples: string[];
}

/**
 * Stream the plain text into the two restore files, with paths made relative to the restore
 * dir, keeping only blocks whose path exists there (and counting the others). Both tools end
 * each block with a blank line, so the text is handled in chunks of whole blocks (indexOf),
 * not line by line: the readline version cost 3.8× the raw setfacl/setfattr on 200,000 files
 * (bench:dumps). latin1 keeps every byte as it was.
 */
async function splitAndRewrite(plain: string, aclOut: string, xattrOut: string, fromDir: string): Promise<SplitCounts> {
  const acl = createWriteStream(aclOut, { mode: 0o600 });
  const xattr = createWriteStream(xattrOut, { mode: 0o600 });
  const counts: SplitCounts = { acl: 0, xattr: 0, missingAcl: 0, missingXattr: 0, originalRoot: '', example: '', missingExamples: [] };
  let root: string[] | undefined;
  // Whether a path exists in the restored tree, from one readdir per directory instead of an
  // lstat per path (200,000 lstats were the largest part of our time, bench:dumps).
  const listings = new Map<string, Set<string> | null>();
  const exists = (real: string): boolean => {
    const slash = real.lastIndexOf('/');
    const dir = slash === -1 ? '' : real.slice(0, slash);
    const name = real.slice(slash + 1);
    // The root itself, or a name readdir's UTF-8 decoding might not give back byte for byte.
    if (name === '' || /[^\x00-\x7f]/.test(real)) return lstatSync(join(fromDir, real), { throwIfNoEntry: false }) !== undefined;
    let names = listings.get(dir);
    if (names === undefined) {
      try {
        names = new Set(readdirSync(join(fromDir, dir)));
      } catch {
        names = null;
      }
      listings.set(dir, names);
    }
    return names !== null && names.has(name);
  };
  const write = async (stream: typeof acl, text: string): Promise<void> => {
    if (text !== '' && !stream.write(text, 'latin1')) await new Promise<void>((r) => stream.once('drain', () => r()));
  };
  const flush = async (blocks: string[]): Promise<void> => {
    const out = { acl: [] as string[], xattr: [] as string[] };
    for (const raw of blocks) {
      const block = raw.replace(/^\n+/, '');
      if (!block.startsWith('# file: ')) continue;
      const eol = block.indexOf('\n');
      if (eol === -1) continue;
      const header = block.slice('# file: '.length, eol);
      const ascii = !/[^\x00-\x7f]/.test(header); // the usual case: no conversions
      const abs = ascii ? header : Buffer.from(header, 'latin1').toString('utf8');
      const rel = abs.replace(/^\/+/, '');
      const real = rel.includes('\\') ? unescapePath(rel) : rel;
      const parts = real.split('/').filter(Boolean);
      root = root === undefined ? parts.slice(0, -1) : root.slice(0, commonLength(root, parts));
      if (!counts.example) counts.example = '/' + real;
      // The line after the header decides which tool wrote the block.
      const isAcl = block.startsWith('# owner: ', eol + 1);
      if (exists(real)) {
        counts[isAcl ? 'acl' : 'xattr']++;
        const relHeader = `# file: ${rel === '' ? '.' : ascii ? rel : Buffer.from(rel, 'utf8').toString('latin1')}`;
        out[isAcl ? 'acl' : 'xattr'].push(relHeader, block.slice(eol), '\n\n');
      } else {
        counts[isAcl ? 'missingAcl' : 'missingXattr']++;
        if (counts.missingExamples.length < 5) counts.missingExamples.push('/' + real);
      }
    }
    await write(acl, out.acl.join(''));
    await write(xattr, out.xattr.join(''));
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
  counts.originalRoot = '/' + (root ?? []).join('/');
  return counts;
}

function commonLength(a: readonly string[], b: readonly string[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** Missing files are warnings (the tree changed between our check and the tool's). */
async function restoreWith(command: Command, warnings: string[]): Promise<void> {
  const r = await run(command, { exitClass: exitClasses({ ok: [1] }) });
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
