/**
 * Which volumes of a duplicity backup set a path touches, read from the set's manifest (plain
 * text in the archive dir), and which requested paths one restore run of their common directory
 * can bring without reading a volume more than their own runs would.
 *
 * Only speed hangs on this: a merged run restores a directory holding every path it stands for,
 * whatever the manifests say. So the parser is strict and says "unreadable" (the caller then runs
 * one path per run) for anything duplicity 0.8.22's manifest.py would not have written.
 *
 * Paths are compared as duplicity compares them: tuples of byte strings (component-wise, so
 * "a/b" < "a-c"). A byte string is held here as a latin1 JS string: one char per byte, so `<`
 * on two of them is the byte order.
 */

/** A path as duplicity indexes it: its components, bytes as latin1 chars; [] is the root ("."). */
export type Index = readonly string[];

export interface VolumeRange {
  readonly volume: number;
  readonly start: Index;
  readonly end: Index;
}

export type ManifestParse = { readonly ok: true; readonly volumes: readonly VolumeRange[] } | { readonly ok: false; readonly line: number; readonly reason: string };

const fail = (line: number, reason: string): ManifestParse => ({ ok: false, line, reason });

/**
 * manifest.py: optional `Hostname`, `Localdir`; then each volume as `Volume K:` and indented
 * `StartingPath <path> [block]`, `EndingPath <path> [block]`, `Hash <type> <hex>`, volumes
 * numbered 1..n in path order; and once `Filelist N` with N indented lines (after the volumes
 * in the archive dir's copy, written as the backup goes; before them in to_string); a newline
 * at the end. The count of the Filelist is the one check a cut at a line's end cannot pass.
 */
export function parseDuplicityManifest(text: Buffer): ManifestParse {
  if (text.includes(0x0d) || text.includes(0)) return fail(0, 'a CR or NUL byte: not a manifest duplicity wrote');
  if (text.at(-1) !== 0x0a) return fail(0, 'no newline at the end: truncated');
  // One line at a time: a full backup's Filelist names every file (hundreds of MB on a big server).
  let pos = 0;
  let n = 0;
  let line: string | undefined;
  const next = (): void => {
    if (pos >= text.length) line = undefined;
    else {
      const nl = text.indexOf(0x0a, pos);
      line = text.toString('latin1', pos, nl);
      pos = nl + 1;
      n++;
    }
  };
  next();
  if (line !== undefined && /^Hostname /.test(line)) next();
  if (line !== undefined && /^Localdir /.test(line)) next();
  let filelist = false;
  const volumes: VolumeRange[] = [];
  while (line !== undefined) {
    const count = /^Filelist (\d+)$/.exec(line);
    if (count) {
      if (filelist) return fail(n, 'a second Filelist');
      filelist = true;
      const files = Number(count[1]);
      next();
      for (let k = 0; k < files; k++, next()) if (line === undefined || !/^[ \t]+[^ \t\v\f]/.test(line)) return fail(n, `Filelist says ${files} lines, line ${k + 1} is not one`);
      continue;
    }
    const header = /^Volume (\d+):$/.exec(line);
    if (!header) return fail(n, 'neither "Volume N:" nor "Filelist N"');
    const volume = Number(header[1]);
    if (volume !== volumes.length + 1) return fail(n, `volume ${volume} after ${volumes.length} volume(s)`);
    next();
    let start: { index: Index } | undefined;
    let end: { index: Index } | undefined;
    for (; line !== undefined && /^[ \t]/.test(line); next()) {
      // Python's bytes.split(): ASCII whitespace only (JS's trim would also cut a 0xA0 byte off a name).
      const fields = line.replace(/^[ \t\v\f]+|[ \t\v\f]+$/g, '').split(/[ \t\v\f]+/);
      const name = fields[0]!;
      if (name === 'Hash') {
        if (fields.length !== 3) return fail(n, 'a Hash line without type and value');
        continue;
      }
      if (name !== 'StartingPath' && name !== 'EndingPath') return fail(n, `unknown field ${JSON.stringify(name)}`);
      if (fields.length < 2 || fields.length > 3 || (fields.length === 3 && !/^\d+$/.test(fields[2]!))) return fail(n, `${name}: a path and an optional block number`);
      const index = parseIndex(fields[1]!);
      if (!index) return fail(n, `${name}: ${JSON.stringify(fields[1])} is not a path duplicity writes`);
      if (name === 'StartingPath') {
        if (start) return fail(n, 'a second StartingPath');
        start = { index };
      } else {
        if (end) return fail(n, 'a second EndingPath');
        end = { index };
      }
    }
    if (!start || !end) return fail(n, `volume ${volume} without ${start ? 'EndingPath' : 'StartingPath'}`);
    if (compareIndex(start.index, end.index) > 0) return fail(n, `volume ${volume} ends before it starts`);
    const before = volumes.at(-1);
    if (before && compareIndex(before.end, start.index) > 0) return fail(n, `volume ${volume} starts before volume ${before.volume} ends`);
    volumes.push({ volume, start: start.index, end: end.index });
  }
  if (!filelist) return fail(n, 'no "Filelist N": truncated');
  if (!volumes.length) return fail(n, 'no volume');
  return { ok: true, volumes };
}

/** manifest.py's Unquote of a path its Quote wrote: `"…"` with \xHH for whitespace, \, " and '; "." is the root. */
function parseIndex(token: string): Index | undefined {
  let path = token;
  if (token.startsWith('"')) {
    if (token.length < 2 || !token.endsWith('"')) return undefined;
    const inner = token.slice(1, -1);
    if (/["']/.test(inner)) return undefined;
    let bad = false;
    path = inner.replace(/\\(?:x([0-9a-fA-F]{2}))?/g, (_m, hex: string | undefined) => {
      if (hex === undefined) bad = true;
      return hex === undefined ? '' : String.fromCharCode(parseInt(hex, 16));
    });
    if (bad) return undefined;
  } else if (/[\\"']/.test(token)) return undefined;
  if (path === '.') return [];
  const parts = path.split('/');
  return parts.some((p) => p === '') ? undefined : parts;
}

/** Python's tuple order on byte strings. */
export function compareIndex(a: Index, b: Index): number {
  for (let k = 0; k < Math.min(a.length, b.length); k++) {
    if (a[k] !== b[k]) return a[k]! < b[k]! ? -1 : 1;
  }
  return a.length - b.length;
}

/** An absolute path (as a request names it) as duplicity's index of it, relative to the source root `/`. */
export function toIndex(path: string): Index {
  const rel = Buffer.from(path.replace(/^\/+/, '').replace(/\/+$/, ''), 'utf8').toString('latin1');
  return rel === '' ? [] : rel.split('/').filter((c) => c !== '');
}

function commonPrefix(a: Index, b: Index): Index {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return a.slice(0, k);
}

/** manifest.py VolumeInfo.contains (recursive): the volumes a restore of `index` reads. */
export function volumesTouching(volumes: readonly VolumeRange[], index: Index): Set<number> {
  const out = new Set<number>();
  for (const v of volumes) if (compareIndex(v.start.slice(0, index.length), index) <= 0 && compareIndex(index, v.end) <= 0) out.add(v.volume);
  return out;
}

/**
 * The manifests a restore at `epoch` reads, by file name in the archive dir: the newest full at
 * or before it and the incrementals after that full up to it (duplicity reads those of its one
 * chain, a subset: more sets only make the merge rule stricter). undefined: no full that old.
 */
export function chainManifests(names: readonly string[], epoch: number): string[] | undefined {
  const time = (stamp: string): number => Date.parse(stamp.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, '$1-$2-$3T$4:$5:$6Z')) / 1000;
  const fulls = names.flatMap((n) => {
    const m = /^duplicity-full\.(\d{8}T\d{6}Z)\.manifest$/.exec(n);
    return m ? [{ n, t: time(m[1]!) }] : [];
  });
  const full = fulls.filter((f) => f.t <= epoch).sort((a, b) => b.t - a.t)[0];
  if (!full) return undefined;
  const incs = names.filter((n) => {
    const m = /^duplicity-inc\.(\d{8}T\d{6}Z)\.to\.(\d{8}T\d{6}Z)\.manifest$/.exec(n);
    return m !== null && time(m[1]!) >= full.t && time(m[2]!) <= epoch;
  });
  return [full.n, ...incs.sort()];
}

/** One restore run: `path` restored as itself, bringing every path of `covers` (a merged run covers more than one). */
export interface FetchRun {
  readonly path: string;
  readonly covers: readonly string[];
}

export interface MergeInput {
  /** The requested paths (absolute), in request order. */
  readonly paths: readonly string[];
  /** Each set of the chain the restore reads: its volumes. */
  readonly sets: readonly (readonly VolumeRange[])[];
  /**
   * Directories a merged run may be (or lie in): a site's own directory, dumps.dir. Never `/`,
   * never a directory of several sites: the volume rule alone would allow one when the sites
   * are small enough to share a volume.
   */
  readonly roots: readonly string[];
  /** false for a directory that cannot be a run's destination (it exists in staging already). */
  readonly usable?: (dir: string) => boolean;
}

/**
 * Paths under a common directory D go in ONE run of D when, in every set of the chain, D touches
 * no volume that the paths themselves do not touch: the merged run reads and decrypts nothing
 * more than their own runs would, and what it writes beyond them comes from those volumes.
 * The shallowest such D wins (it takes the most paths); the rest run one path each.
 */
export function mergeFetchRuns(input: MergeInput): FetchRun[] {
  const idx = new Map(input.paths.map((p) => [p, toIndex(p)] as const));
  const roots = input.roots.map(toIndex).filter((r) => r.length > 0);
  const under = (x: Index, dir: Index): boolean => x.length >= dir.length && dir.every((c, k) => c === x[k]);
  const touched = (set: readonly VolumeRange[], paths: readonly string[]): Set<number> => new Set(paths.flatMap((p) => [...volumesTouching(set, idx.get(p)!)]));
  const candidates = new Map<string, Index>();
  for (const i of idx.values()) {
    for (let len = 1; len < i.length; len++) {
      const d = i.slice(0, len);
      if (roots.some((r) => under(d, r))) candidates.set(d.join('/'), d);
    }
  }
  const taken = new Set<string>();
  const merged: FetchRun[] = [];
  for (const d of [...candidates.values()].sort((a, b) => a.length - b.length || compareIndex(a, b))) {
    const members = input.paths.filter((p) => !taken.has(p) && under(idx.get(p)!, d));
    if (members.length < 2 || input.paths.some((p) => taken.has(p) && under(idx.get(p)!, d))) continue;
    if (!input.sets.every((set) => [...volumesTouching(set, d)].every((v) => touched(set, members).has(v)))) continue;
    // The deepest directory holding them all (a requested directory itself, maybe): the same paths, less beside them.
    const narrow = members.map((m) => idx.get(m)!).reduce(commonPrefix);
    const path = '/' + Buffer.from(narrow.join('/'), 'latin1').toString('utf8');
    if (input.usable && !input.usable(path)) continue;
    for (const m of members) taken.add(m);
    merged.push({ path, covers: members });
  }
  // Request order: a run starts where its first path stood.
  const runs: FetchRun[] = [];
  for (const p of input.paths) {
    if (!taken.has(p)) runs.push({ path: p, covers: [p] });
    else {
      const m = merged.find((r) => r.covers[0] === p);
      if (m) runs.push(m);
    }
  }
  return runs;
}
