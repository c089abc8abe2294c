/**
 * The sidecar's text (acl-sidecar.ts) is blocks, each `# file: /abs/path\n…lines…\n\n`: getfacl's
 * (their second line is `# owner: `) then getfattr's. `restore acls` needs each block handed to
 * the tool that reads it, with its path made relative to the restore directory (setfacl and
 * setfattr run there), and the blocks counted. This does that on Buffers, chunk by chunk, as the
 * decompressor delivers them: a few byte comparisons per block and no conversion to strings. The
 * string version (scratch file, split, regex, a readdir/lstat per path) cost 1.5-2.2 s of Node
 * CPU per 200,000 files, as much as setfacl itself (~2 s); this one ~0.5 s (bench:dumps, ACL part).
 *
 * Paths stay as the tools escaped them (\ooo for a newline and other odd bytes, `\\` or \134 for a backslash):
 * bytes pass through unchanged but for the leading `/`. A block is dropped (and counted as
 * missing) only when its directory is absent under the restore dir, one check per directory:
 * a subtree restore (one site out of the whole server) then costs nothing in the tools for the
 * rest. Whether each file exists is left to setfacl/setfattr, which report a missing one on
 * stderr and go on (acl-restore.ts counts those).
 */

export type Tool = 'acl' | 'xattr';

export interface BlockCounts {
  /** Blocks handed to setfacl / setfattr. */
  readonly sent: Record<Tool, number>;
  /** Blocks dropped because their directory is not under the restore dir. */
  readonly dropped: Record<Tool, number>;
  /** The first few dropped paths, unescaped, absolute as in the sidecar. */
  readonly droppedExamples: string[];
}

const NL = 0x0a;
const SLASH = 0x2f;
const FILE = Buffer.from('# file: ');
const OWNER = Buffer.from('# owner: ');
const DOT = 0x2e;
const EXAMPLES = 5;

export class SidecarBlocks implements BlockCounts {
  readonly sent: Record<Tool, number> = { acl: 0, xattr: 0 };
  readonly dropped: Record<Tool, number> = { acl: 0, xattr: 0 };
  readonly droppedExamples: string[] = [];
  #rest: Buffer = Buffer.alloc(0);
  /** The escaped bytes every path shares so far (original root), and the first path. */
  #root: Buffer | undefined;
  #rootLen = 0;
  #first: Buffer | undefined;
  /** The last directory looked up (blocks come in walk order: runs share one) and its answer. */
  #lastDir: Buffer | undefined;
  #lastDirKept = false;
  #dirs = new Map<string, boolean>();

  /** `dirExists(escaped)`: whether the directory (relative, as escaped in the sidecar; '' is the restore dir) exists. */
  constructor(private readonly dirExists: (escapedRelativeDir: Buffer) => boolean) {}

  /**
   * Take the next decompressed bytes; returns what goes to each tool (whole blocks only). The
   * chunk is overwritten (the caller hands it over): the output is the input with a few bytes cut, moved
   * down to `dst`, so the whole-tree case is one copyWithin per block and no allocation.
   */
  push(chunk: Buffer): Record<Tool, Buffer[]> {
    const buf = this.#rest.length ? Buffer.concat([this.#rest, chunk]) : chunk;
    const out: Record<Tool, Buffer[]> = { acl: [], xattr: [] };
    let dst = 0;
    let from = 0; // where the current tool's output starts
    let tool: Tool | undefined;
    const emit = (): void => {
      if (tool && dst > from) out[tool].push(buf.subarray(from, dst));
      from = dst;
    };
    const keep = (a: number, b: number): void => {
      if (a !== dst) buf.copyWithin(dst, a, b);
      dst += b - a;
    };
    let pos = 0;
    for (;;) {
      const len = buf.length;
      while (pos < len && buf[pos] === NL) pos++;
      // The header's end, then the blank line: byte loops (a native indexOf per block cost more
      // in its call than in its search, blocks being ~130 bytes).
      let eol = pos;
      while (eol < len && buf[eol] !== NL) eol++;
      let end = eol;
      while (end < len - 1 && !(buf[end] === NL && buf[end + 1] === NL)) end++;
      if (end >= len - 1) break;
      const next = end + 2;
      let p0 = pos + FILE.length;
      while (p0 < eol && buf[p0] === SLASH) p0++;
      if (eol >= end || (p0 === eol && p0 === pos + FILE.length) || !startsWith(buf, pos, FILE)) {
        // Not a block either tool wrote, a header alone, or an empty path: nothing to apply.
        pos = next;
        continue;
      }
      const kind: Tool = startsWith(buf, eol + 1, OWNER) ? 'acl' : 'xattr';
      let slash = eol - 1;
      while (slash >= p0 && buf[slash] !== SLASH) slash--;
      this.#track(buf, p0, eol);
      if (!this.#keep(buf, p0, slash < p0 ? p0 : slash)) {
        this.dropped[kind]++;
        if (this.droppedExamples.length < EXAMPLES) this.droppedExamples.push('/' + unescapeName(buf.subarray(p0, eol)).toString('utf8'));
        pos = next;
        continue;
      }
      this.sent[kind]++;
      if (tool !== kind) {
        emit();
        tool = kind;
      }
      keep(pos, pos + FILE.length);
      if (p0 === eol) buf[dst++] = DOT; // the restore dir itself (a `/` was cut: there is room)
      keep(p0, next);
      pos = next;
    }
    emit();
    this.#rest = Buffer.from(buf.subarray(pos)); // a copy: the chunk's memory is not kept alive
    return out;
  }

  /** The end of the text: a last block without its blank line still counts. */
  end(): Record<Tool, Buffer[]> {
    const out = this.push(Buffer.from('\n\n'));
    this.#rest = Buffer.alloc(0);
    return out;
  }

  /** The directory every path shares on the original server (e.g. /home/virtual), unescaped. */
  get originalRoot(): string {
    return '/' + unescapeName(this.#root?.subarray(0, this.#rootLen) ?? Buffer.alloc(0)).toString('utf8');
  }

  /** The first path of the sidecar, unescaped ('' when it holds none). */
  get example(): string {
    return this.#first ? '/' + unescapeName(this.#first).toString('utf8') : '';
  }

  /** Shrink the shared root to what this path has in common with it (whole components). */
  #track(buf: Buffer, p0: number, eol: number): void {
    if (!this.#root) {
      this.#first = Buffer.from(buf.subarray(p0, eol));
      let slash = this.#first.lastIndexOf(SLASH);
      if (slash < 0) slash = 0;
      this.#root = this.#first.subarray(0, slash);
      this.#rootLen = slash;
      return;
    }
    const root = this.#root;
    const n = this.#rootLen;
    const len = eol - p0;
    if (len >= n && sameBytes(buf, p0, root, n) && (len === n || n === 0 || buf[p0 + n] === SLASH)) return;
    let boundary = 0;
    let i = 0;
    for (; i < n && i < len && root[i] === buf[p0 + i]; i++) if (root[i] === SLASH) boundary = i;
    if ((i === n && (i === len || buf[p0 + i] === SLASH)) || (i === len && root[i] === SLASH)) boundary = i;
    this.#rootLen = boundary;
  }

  #keep(buf: Buffer, from: number, to: number): boolean {
    const last = this.#lastDir;
    if (last && to - from === last.length && sameBytes(buf, from, last, last.length)) return this.#lastDirKept;
    const key = buf.toString('latin1', from, to);
    let kept = this.#dirs.get(key);
    if (kept === undefined) {
      kept = this.dirExists(buf.subarray(from, to));
      this.#dirs.set(key, kept);
    }
    this.#lastDir = Buffer.from(buf.subarray(from, to));
    this.#lastDirKept = kept;
    return kept;
  }
}

/** Byte loops, not Buffer.compare: for a few bytes its argument checks cost more than the compare. */
function startsWith(buf: Buffer, at: number, prefix: Buffer): boolean {
  if (at + prefix.length > buf.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix[i]) return false;
  return true;
}

function sameBytes(buf: Buffer, at: number, other: Buffer, length: number): boolean {
  for (let i = 0; i < length; i++) if (buf[at + i] !== other[i]) return false;
  return true;
}

const BACKSLASH = 0x5c;
const isOctal = (b: number | undefined): boolean => b !== undefined && b >= 0x30 && b <= 0x37;

/**
 * The real bytes of a name as the tools escape it: \ooo for a newline and other odd bytes
 * (both tools; getfattr also for `\`), `\\` for a backslash (getfacl). Their own unquote reads both.
 */
export function unescapeName(escaped: Buffer): Buffer {
  if (escaped.indexOf(BACKSLASH) === -1) return escaped;
  const out = Buffer.alloc(escaped.length);
  let n = 0;
  for (let i = 0; i < escaped.length; i++) {
    const b = escaped[i]!;
    if (b === BACKSLASH && isOctal(escaped[i + 1]) && isOctal(escaped[i + 2]) && isOctal(escaped[i + 3])) {
      out[n++] = ((escaped[i + 1]! - 0x30) << 6) | ((escaped[i + 2]! - 0x30) << 3) | (escaped[i + 3]! - 0x30);
      i += 3;
    } else if (b === BACKSLASH && escaped[i + 1] === BACKSLASH) {
      out[n++] = BACKSLASH;
      i += 1;
    } else out[n++] = b;
  }
  return out.subarray(0, n);
}
