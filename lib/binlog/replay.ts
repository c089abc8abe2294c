import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../private-dir.js';
import { MissingDependencyError, RestoreError } from '../errors.js';
import { startChild } from '../proc/child.js';
import { cmd, type Command } from '../proc/command.js';
import { pipeToFile } from '../proc/pipeline.js';
import { whichSystem } from '../proc/which.js';
import { EventReader, touches, unsafeFor, type Transaction } from './events.js';
import { binlogDir, binlogSeq, localBinlogs, readSums, readState, sha256File, type LocalBinlog } from './store.js';
import { copiedUpTo, firstMissing, followerLive, positionedDumps, type PositionedDump } from './window.js';

/**
 * `restore db NAME --at T` / `--before-event FILE:POS`: which dump, which binlog copies, and the
 * replay of that database's events on the restored dump with the server's own tools:
 * `mariadb-binlog --database=NAME --start-position=P --stop-datetime=T files… | mariadb NAME`.
 * All times are UTC for the tools (TZ=UTC): their --stop-datetime and event headers use the
 * process's time zone.
 */
export type Stop = { readonly at: number } | { readonly file: string; readonly position: number };

export interface ReplayPlan {
  /** The binlog copies' directory. */
  readonly dir: string;
  readonly database: string;
  readonly into: string;
  readonly dump: PositionedDump;
  readonly files: readonly LocalBinlog[];
  readonly stop: Stop;
  /**
   * How many transactions will be replayed (those touching the database): a count, not the list,
   * which for a window of a million held hundreds of MB through the whole restore.
   */
  readonly transactions: number;
  /** The reachable window for this database (ms). */
  readonly window: { readonly from: number; readonly to: number };
}

const sec = (ms: number): number => Math.floor(ms / 1000);

/** `YYYY-MM-DD HH:MM:SS` in UTC, as the tools take it with TZ=UTC. */
export function toolTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

/** Times in messages: the admin's local time zone, to the second. */
export function shown(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function binlogTool(): string {
  const tool = whichSystem('mariadb-binlog') ?? whichSystem('mysqlbinlog');
  if (!tool) throw new MissingDependencyError('mariadb-binlog', 'mariadb-client', 'mariadb');
  return tool;
}

/** A stop's moment in ms for comparisons (an event position is resolved by the scan). */
function compareToDump(d: PositionedDump, stop: Stop): boolean {
  if ('at' in stop) return sec(d.at) <= sec(stop.at);
  const a = binlogSeq(d.entry.binlog.file) ?? 0;
  const b = binlogSeq(stop.file) ?? 0;
  return a < b || (a === b && d.entry.binlog.position <= stop.position);
}

/**
 * The dump and files for `database` at `stop`, refusing (exit 8, with what is possible) a moment
 * outside the window, a missing or changed binlog copy.
 */
export async function planReplay(dumpsDir: string, database: string, into: string, stop: Stop, signal?: AbortSignal, now = Date.now()): Promise<ReplayPlan> {
  const dir = binlogDir(dumpsDir);
  const files = localBinlogs(dir);
  const state = readState(dir);
  const dumps = positionedDumps(dumpsDir, database);
  const what = 'at' in stop ? shown(stop.at) : `the event at ${stop.file}:${stop.position}`;
  if (!dumps.length) throw new RestoreError(`refusing a point-in-time restore of '${database}': no dump of it records a binlog position (binary logging was off, or the dumps predate it); a plain restore db is possible`);
  const oldest = dumps.at(-1)!;
  const dump = dumps.find((d) => compareToDump(d, stop));
  if (!dump) throw new RestoreError(`refusing: ${what} is before the oldest dump of '${database}' with a binlog position (${shown(oldest.at)}, run ${oldest.runId}): points from then on can be restored`);
  const seq = binlogSeq(dump.entry.binlog.file)!;
  const to = copiedUpTo(files, state, now);
  const missing = firstMissing(files, seq);
  if (missing && !Number.isFinite(missing.after)) {
    throw new RestoreError(`refusing: the binlog file ${dump.entry.binlog.file} the dump of run ${dump.runId} starts at is not in ${dir}: no point after ${shown(dump.at)} can be reached from it; a plain restore db of that run is possible`);
  }
  const end = missing ? missing.after : to ?? dump.at;
  const window = { from: oldest.at, to: end };
  if (missing && ('at' in stop ? sec(stop.at) > sec(missing.after) : (binlogSeq(stop.file) ?? 0) >= (binlogSeq(missing.name) ?? Infinity))) {
    throw new RestoreError(`refusing: the binlog file ${missing.name} is missing from ${dir}: points after ${shown(missing.after)} cannot be reached from the dump of run ${dump.runId} (${shown(dump.at)}); points from ${shown(dump.at)} to ${shown(missing.after)} can, and any point after the next dump`);
  }
  if ('at' in stop && (to === undefined || sec(stop.at) > sec(end))) {
    const live = followerLive(state, now);
    throw new RestoreError(`refusing: ${what} is after the newest copied binlog event (${to === undefined ? 'no copies' : shown(end)}${live ? '' : '; binlog follow is not running'}): points from ${shown(oldest.at)} to ${to === undefined ? 'the newest dump' : shown(end)} can be restored`);
  }
  const chosen = files.filter((f) => f.seq >= seq && ('at' in stop || f.seq <= (binlogSeq(stop.file) ?? 0)));
  if (!('at' in stop) && !chosen.some((f) => f.name === stop.file)) throw new RestoreError(`refusing: no binlog copy ${stop.file} in ${dir}`);
  await checkSums(dir, chosen);
  // Only what the plan uses is kept: the transactions that refuse it (the first is named); the database's are counted.
  let count = 0;
  const refusing = await scan(
    dir,
    chosen,
    dump.entry.binlog.position,
    stop,
    (t) => {
      if (touches(t, database)) count++;
      return unsafeFor(t, database, into) !== undefined;
    },
    signal,
  );
  const unsafe = refusing.map((t) => ({ t, s: unsafeFor(t, database, into) })).find((x) => x.s);
  if (unsafe) {
    const { t, s } = unsafe;
    throw new RestoreError(
      `refusing: the binlog holds a statement at ${t.file}:${t.position} (${shown(t.time * 1000)}) ${s!.db !== database ? `run from the default database '${s!.db}'` : 'naming the database itself'} that changes '${database}' (${s!.text.replace(/\s+/g, ' ').slice(0, 100)}): ` +
        `replaying only '${database}' would ${s!.db !== database ? 'leave it out' : `apply it to '${database}' instead of '${into}'`}; possible: a moment before it (--before-event ${t.file}:${t.position}), or a restore of a dump after it`,
    );
  }
  return { dir, database, into, dump, files: chosen, stop, transactions: count, window };
}

/** Closed copies must match the sha256 the follower recorded when they closed. */
async function checkSums(dir: string, files: readonly LocalBinlog[]): Promise<void> {
  const sums = readSums(dir);
  for (const f of files) {
    const want = sums.get(f.name);
    if (want && (await sha256File(join(dir, f.name))) !== want) throw new RestoreError(`refusing: the binlog copy ${join(dir, f.name)} does not match the sha256 recorded when it was closed (${join(dir, 'SHA256SUMS')})`);
  }
}

/** mariadb-binlog's range arguments for these files: start in the first, the stop. */
function rangeArgs(files: readonly LocalBinlog[], start: number, stop: Stop): string[] {
  return [`--start-position=${start}`, ...('at' in stop ? [`--stop-datetime=${toolTime(sec(stop.at) + 1)}`] : [`--stop-position=${stop.position}`])];
}

/**
 * Every transaction in the range, all databases (the safety check and the count read them), those
 * `keep` accepts kept. Without --verbose: the row events' headers say which tables they change,
 * and the decoder printing every column of every row image was most of the scan's cost.
 */
async function scan(dir: string, files: readonly LocalBinlog[], start: number, stop: Stop, keep: (t: Transaction) => boolean, signal?: AbortSignal): Promise<Transaction[]> {
  const tool = binlogTool();
  const out: Transaction[] = [];
  for (const [i, f] of files.entries()) {
    const args = ['--base64-output=DECODE-ROWS', ...(i === 0 ? [`--start-position=${start}`] : []), ...('at' in stop ? [`--stop-datetime=${toolTime(sec(stop.at) + 1)}`] : f.name === stop.file ? [`--stop-position=${stop.position}`] : []), '--', join(dir, f.name)];
    for (const t of await readEvents(cmd(tool, args, { env: { TZ: 'UTC' } }), f.name, signal, keep)) out.push(t);
  }
  return out;
}

/** Runs the decoder and parses its output as it streams (a million events do not sit in memory as text). */
export async function readEvents(command: Command, file: string, signal?: AbortSignal, keep?: (t: Transaction) => boolean): Promise<Transaction[]> {
  const child = startChild(command, { signal });
  const reader = new EventReader(file, keep);
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (text: string) => reader.feed(text));
  const end = await child.ended;
  if (end.exitCode !== 0) throw new RestoreError(child.failure(end, `reading ${file}`).message);
  return reader.end();
}

/** Every transaction of `database` in the kept copies, within [from, to] (seconds), for `binlog events`. */
export async function listEvents(dumpsDir: string, database: string, from?: number, to?: number, signal?: AbortSignal): Promise<Transaction[]> {
  const dir = binlogDir(dumpsDir);
  const tool = binlogTool();
  const out: Transaction[] = [];
  for (const f of localBinlogs(dir)) {
    if (from !== undefined && f.mtimeMs < from * 1000) continue;
    const args = ['--verbose', '--base64-output=DECODE-ROWS', ...(from !== undefined ? [`--start-datetime=${toolTime(from)}`] : []), ...(to !== undefined ? [`--stop-datetime=${toolTime(to + 1)}`] : []), '--', join(dir, f.name)];
    // --verbose: older decoders print `# Number of rows` only with it.
    for (const t of await readEvents(cmd(tool, args, { env: { TZ: 'UTC' } }), f.name, signal, (t) => touches(t, database))) out.push(t);
  }
  return out;
}

/**
 * The replay itself: that database's events (--database; --rewrite-db for --into) into the
 * client with the restored database as default. The GTID sequence numbers are dropped (sed) so
 * the server gives the replayed transactions new ones instead of logging the old GTIDs again.
 */
export async function replay(plan: ReplayPlan, client: { readonly client: string; readonly optionFile: string; readonly secrets: readonly string[] }, signal?: AbortSignal): Promise<void> {
  const dir = plan.dir;
  const tool = binlogTool();
  const sed = whichSystem('sed');
  if (!sed) throw new MissingDependencyError('sed', 'sed', 'sed');
  const { database, into } = plan;
  const stages: Command[] = [];
  const last = plan.files.at(-1)!;
  // One mariadb-binlog for all files: --start-position applies to the first, --stop-position to the last.
  stages.push(
    cmd(
      tool,
      [`--database=${database}`, ...(into !== database ? [`--rewrite-db=${database}->${into}`] : []), ...rangeArgs(plan.files, plan.dump.entry.binlog.position, 'at' in plan.stop ? plan.stop : { file: last.name, position: plan.stop.position }), '--', ...plan.files.map((f) => join(dir, f.name))],
      { env: { TZ: 'UTC' } },
    ),
  );
  stages.push(cmd(sed, ['-e', '/^\\/\\*M!100001 SET @@session\\.gtid_seq_no=[0-9]*\\*\\/\\/\\*!\\*\\/;$/d']));
  stages.push(cmd(client.client, [`--defaults-extra-file=${client.optionFile}`, '--binary-mode', `--database=${into}`]));
  const work = await makeTempDir('asb-replay-');
  try {
    await pipeToFile(stages, join(work, 'client-output'), { signal, secrets: client.secrets }).catch((err: unknown) => {
      throw new RestoreError(`replaying the binlog of '${database}' into '${into}' failed (the dump is loaded; the events up to the failure are applied): ${err instanceof Error ? err.message : String(err)}`, {}, { cause: err });
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

