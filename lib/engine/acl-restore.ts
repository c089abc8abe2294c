import { lstatSync, statSync } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { decompressorCommand, sniffCompression } from '../dumps/compress.js';
import { BackupError, EngineError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { cmd, type Command } from '../proc/command.js';
import { startChild, type StartedChild } from '../proc/child.js';
import { endedWhy, type Ended } from '../proc/lifecycle.js';
import { resolveTool } from '../proc/which.js';
import { SidecarBlocks, unescapeName, type Tool } from './acl-blocks.js';
import { SIDECAR_BASENAME } from './acl-sidecar.js';

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

const EXAMPLES = 5;

/**
 * Re-apply a sidecar to a restored tree. Paths in the sidecar are absolute source paths; engines
 * restore `/x/y` to `DIR/x/y`, so we strip the leading `/` and run setfacl/setfattr in DIR. The
 * text streams from the decompressor through Node (acl-blocks.ts: blocks sorted by tool, paths
 * made relative, blocks whose directory DIR lacks dropped) into the two tools: nothing is
 * written to disk and no path is looked up one by one. Counts come from the blocks streamed and
 * from the tools' own reports of files they did not find. When nothing of the sidecar exists
 * under DIR, DIR is the wrong directory and we say which one the sidecar expects (exit 2).
 * A sidecar that turns out corrupt half-way has had its first part applied: that is still an
 * error (EngineError, exit 5), and those ACLs are the backup's own.
 */
export async function restoreAcls(fromDir: string, sidecarPath?: string): Promise<RestoreAclsResult> {
  const sidecar = sidecarPath ?? (await findSidecar(fromDir));
  if (!sidecar) throw new EngineError(`no ${SIDECAR_BASENAME}.zst/.gz found under ${fromDir}: pass the sidecar path`, 'duplicity', { fromDir });
  const head = Buffer.alloc(4);
  const fh = await open(sidecar, 'r');
  const { bytesRead } = await fh.read(head, 0, 4, 0).finally(() => fh.close());
  if (bytesRead === 0) return { sidecar, aclFiles: 0, xattrFiles: 0, missingAcl: 0, missingXattr: 0, originalRoot: '/', warnings: [] };
  const packed = sniffCompression(head);
  if (packed === 'none') throw new EngineError(`${sidecar}: not a zstd or gzip file`, 'duplicity', { file: sidecar });

  const blocks = new SidecarBlocks(directoryUnder(fromDir));
  const tools: Record<Tool, ToolFeed> = {
    acl: new ToolFeed(cmd(resolveTool('setfacl', 'acl'), ['--restore=-'], { cwd: fromDir }), 'setfacl', false),
    xattr: new ToolFeed(cmd(resolveTool('setfattr', 'attr'), ['--restore=-'], { cwd: fromDir }), 'setfattr', true),
  };
  const unpack = startChild(decompressorCommand(packed, sidecar), { stdout: 'pipe' });
  let unpacked: Ended;
  try {
    const send = async (out: Record<Tool, Buffer[]>): Promise<void> => void (await Promise.all([tools.acl.write(out.acl), tools.xattr.write(out.xattr)]));
    for await (const chunk of unpack.stdout! as AsyncIterable<Buffer>) await send(blocks.push(chunk));
    await send(blocks.end());
    unpacked = await unpack.ended;
  } catch (err) {
    void unpack.terminate(1000);
    tools.acl.kill();
    tools.xattr.kill();
    throw err;
  } finally {
    await Promise.all([tools.acl.end(), tools.xattr.end()]);
  }
  if (unpacked.exitCode !== 0) {
    const why = unpacked.startError ?? endedWhy(unpacked);
    throw new EngineError(`${unpack.shown}: ${why}: ${sidecar} is damaged or truncated (the ACLs before the damage were applied)`, 'duplicity', { file: sidecar });
  }
  for (const t of Object.values(tools)) t.check();

  const applied = (t: Tool): number => Math.max(0, blocks.sent[t] - tools[t].report.missing);
  const missing = (t: Tool): number => blocks.dropped[t] + tools[t].report.missing;
  const held = blocks.sent.acl + blocks.sent.xattr + blocks.dropped.acl + blocks.dropped.xattr;
  if (held > 0 && applied('acl') + applied('xattr') === 0) {
    const root = blocks.originalRoot;
    throw new BackupError(
      `none of the ${held} paths in ${sidecar} exist under ${fromDir}: the sidecar was written for paths under ${root} ` +
        `(e.g. ${blocks.example}), so ${fromDir} should contain ${join(fromDir, root)}; pass the directory the backup was restored into`,
      ExitCode.USAGE,
      { fromDir, sidecar, originalRoot: root },
    );
  }
  const examples = [...new Set([...blocks.droppedExamples, ...tools.acl.report.examples, ...tools.xattr.report.examples])].slice(0, EXAMPLES);
  const warnings = [...examples.map((p) => `not in the restored tree: ${p}`), ...tools.acl.report.others, ...tools.xattr.report.others];
  return { sidecar, aclFiles: applied('acl'), xattrFiles: applied('xattr'), missingAcl: missing('acl'), missingXattr: missing('xattr'), originalRoot: blocks.originalRoot, warnings };
}

/** Whether a directory of the sidecar (escaped, relative) is a directory under `fromDir`. */
function directoryUnder(fromDir: string): (escaped: Buffer) => boolean {
  const base = Buffer.from(fromDir.endsWith('/') ? fromDir : fromDir + '/');
  return (escaped) => {
    try {
      // Raw bytes (a Buffer path): a name that is not UTF-8 is looked up as it is on disk.
      // lstat: a symlink where the backup had a directory is not followed out of the tree.
      return escaped.length === 0 ? statSync(fromDir).isDirectory() : lstatSync(Buffer.concat([base, unescapeName(escaped)])).isDirectory();
    } catch {
      return false;
    }
  };
}

/** One of setfacl / setfattr, started on its first block, reading the blocks from its stdin. */
class ToolFeed {
  readonly report: ToolReport;
  #child: StartedChild | undefined;
  #exit: Ended | undefined;
  constructor(
    private readonly command: Command,
    tool: string,
    escapes: boolean,
  ) {
    this.report = new ToolReport(tool, escapes);
  }

  async write(pieces: readonly Buffer[]): Promise<void> {
    if (pieces.length === 0) return;
    this.#child ??= startChild(this.command, { stdin: 'pipe', stdout: 'ignore', onStderr: (d) => this.report.take(d) });
    await this.#child.write(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces));
  }

  async end(): Promise<void> {
    if (this.#child && !this.#exit) {
      this.#exit = await this.#child.endInput();
      this.report.finish();
    }
  }

  kill(): void {
    void this.#child?.terminate(1000);
  }

  /** A file it did not find is counted (the report); anything else it said fails the restore. */
  check(): void {
    const exit = this.#exit;
    if (!exit || exit.exitCode === 0) return;
    const r = this.report;
    // setfacl and setfattr exit 1 when some path failed, and go on with the others.
    if (exit.exitCode === 1 && r.errors.length === 0 && r.missing > 0) return;
    const why = exit.startError ?? endedWhy(exit);
    throw new EngineError(`${this.#child!.shown} (in ${this.command.cwd}): ${why}${r.errors.length ? `: ${r.errors.slice(-3).join('; ')}` : ''}`, 'duplicity', { stderr: r.errors.slice(-20) });
  }
}

const NOT_FOUND = [': No such file or directory', ': Not a directory'];

/**
 * What setfacl/setfattr print on stderr: one message per path they could not find
 * (`setfacl: PATH: No such file or directory`), counted; anything else is an error. setfacl
 * prints a name's newline as it is, so messages are split where a line starts with the tool's
 * name, not at every newline; setfattr prints names escaped (\ooo). Parsed as it comes: a
 * partial restore may report hundreds of thousands of paths.
 */
class ToolReport {
  missing = 0;
  readonly examples: string[] = [];
  readonly errors: string[] = [];
  /** Messages kept for the log when the tool still exited 0. */
  get others(): string[] {
    return this.errors.slice(0, 20);
  }
  readonly #prefix: string;
  #pending = '';
  constructor(
    tool: string,
    private readonly escapes: boolean,
  ) {
    this.#prefix = `${tool}: `;
  }

  take(chunk: Buffer): void {
    this.#pending += chunk.toString('latin1'); // every byte kept as it was
    const cut = this.#pending.lastIndexOf('\n' + this.#prefix);
    if (cut === -1) return;
    this.#parse(this.#pending.slice(0, cut + 1));
    this.#pending = this.#pending.slice(cut + 1);
  }

  finish(): void {
    this.#parse(this.#pending);
    this.#pending = '';
  }

  #parse(text: string): void {
    if (text === '') return;
    for (const [i, raw] of text.split('\n' + this.#prefix).entries()) {
      const message = raw.replace(/\n+$/, '');
      if (message === '') continue;
      const named = i > 0 || message.startsWith(this.#prefix);
      const body = i === 0 && named ? message.slice(this.#prefix.length) : message;
      const suffix = named ? NOT_FOUND.find((s) => body.endsWith(s)) : undefined;
      if (suffix === undefined) {
        if (this.errors.length < 1000) this.errors.push(Buffer.from(named ? this.#prefix + body : body, 'latin1').toString('utf8'));
        continue;
      }
      this.missing++;
      if (this.examples.length < EXAMPLES) {
        const path = Buffer.from(body.slice(0, -suffix.length), 'latin1');
        this.examples.push('/' + (this.escapes ? unescapeName(path) : path).toString('utf8'));
      }
    }
  }
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
