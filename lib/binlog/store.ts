import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { BINLOG_DIR } from '../model/binlog.js';

/**
 * `<dumps.dir>/binlog/`: the follower's copies of the server's binlog files, as the server names
 * them, plus three files of ours:
 * - SHA256SUMS: `sha256  name` of every closed file (a newer one exists), in sha256sum's format;
 * - follow.json: the follower's state (pid, last contact, the server's position), rewritten while it runs;
 * - gaps.json: where the copies are not continuous (a file the server purged before we had it).
 */
export const SUMS = 'SHA256SUMS';
export const STATE = 'follow.json';
export const GAPS = 'gaps.json';
/** A binlog file name: basename, dot, a sequence number (mariadb: 6 digits or more). */
const BINLOG_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.(\d{6,})$/;

export function binlogDir(dumpsDir: string): string {
  return join(dumpsDir, BINLOG_DIR);
}

export function ensureBinlogDir(dumpsDir: string): string {
  const dir = binlogDir(dumpsDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** The sequence number of a binlog file name, or undefined for other names. */
export function binlogSeq(name: string): number | undefined {
  const m = BINLOG_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

export interface LocalBinlog {
  readonly name: string;
  readonly seq: number;
  readonly bytes: number;
  /** Last write: the time of its newest event, to the second. */
  readonly mtimeMs: number;
}

/** The copies in `dir`, oldest first. */
export function localBinlogs(dir: string): LocalBinlog[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: LocalBinlog[] = [];
  for (const name of names) {
    const seq = binlogSeq(name);
    if (seq === undefined) continue;
    try {
      const st = statSync(join(dir, name));
      if (st.isFile()) out.push({ name, seq, bytes: st.size, mtimeMs: st.mtimeMs });
    } catch {
      // removed meanwhile (retention)
    }
  }
  return out.sort((a, b) => a.seq - b.seq);
}

export function readSums(dir: string): Map<string, string> {
  const sums = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync(join(dir, SUMS), 'utf8');
  } catch {
    return sums;
  }
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (m) sums.set(m[2]!, m[1]!);
  }
  return sums;
}

export function writeSums(dir: string, sums: ReadonlyMap<string, string>): void {
  const lines = [...sums].sort(([a], [b]) => (binlogSeq(a) ?? 0) - (binlogSeq(b) ?? 0)).map(([name, sha]) => `${sha}  ${name}\n`);
  writeFileAtomic(join(dir, SUMS), lines.join(''), { sync: true });
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface FollowState {
  readonly pid: number;
  /** Last time the follower looked (ISO). */
  readonly updatedAt: string;
  readonly connected: boolean;
  /** The file being written now. */
  readonly file?: string;
  /** The server's own SHOW MASTER STATUS at updatedAt, for the lag. */
  readonly server?: { readonly file: string; readonly position: number };
  /** The local copy's size of the server's current file at updatedAt. */
  readonly localBytes?: number;
  readonly lastError?: string;
}

export interface Gap {
  /** The last file we had before the gap (undefined: none). */
  readonly after?: string;
  /** The first file we could get after it. */
  readonly resumedAt: string;
  readonly detectedAt: string;
  /** The time of the last event we had before the gap (ISO), when known. */
  readonly lastEventBefore?: string;
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function readState(dir: string): FollowState | undefined {
  return readJson<FollowState>(join(dir, STATE));
}

export function writeState(dir: string, state: FollowState): void {
  writeFileAtomic(join(dir, STATE), JSON.stringify(state, null, 2) + '\n', { sync: false });
}

export function readGaps(dir: string): Gap[] {
  return readJson<Gap[]>(join(dir, GAPS)) ?? [];
}

export function addGap(dir: string, gap: Gap): void {
  writeFileAtomic(join(dir, GAPS), JSON.stringify([...readGaps(dir), gap], null, 2) + '\n', { sync: true });
}

/** Files missing between `from` and the newest copy (a sequence number skipped), oldest first. */
export function missingBetween(files: readonly LocalBinlog[], fromSeq: number): number[] {
  const have = new Set(files.map((f) => f.seq));
  const last = files.at(-1)?.seq ?? fromSeq;
  const out: number[] = [];
  for (let s = fromSeq; s <= last; s++) if (!have.has(s)) out.push(s);
  return out;
}
