import { rmSync } from 'node:fs';
import { writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { processStartTime, thisProcess } from '../lock/lock.js';
import { atLastResort } from '../last-resort.js';
import type { Logger } from '../log.js';
import { runProgressFile, type RunProgress } from '../report/run-progress.js';
import type { JobWatch } from '../report/progress-view.js';
import { liveGroups } from '../proc/process-group.js';
import type { LockWait } from '../model/kind.js';
import type { DumpEvent } from '../dumps/run-dumps.js';

/** Dumps finishing by the hundred must not rewrite the file by the hundred: at most once a second. */
const MIN_INTERVAL_MS = 1000;

/**
 * The job's side of `<state.dir>/running.json` (report/run-progress.ts): what `status` shows
 * while the job works, and what names the job if it dies. Writing it never fails the job.
 */
export class ProgressFile {
  private state: RunProgress;
  private lastWrite = 0;
  private readonly forget: () => void;

  /** `watch`: the terminal's display (CLI on a TTY), told the same phases and counts as the file. */
  constructor(private readonly loaded: LoadedConfig, private readonly log: Logger, info: { command: string; trigger: string; engine: string }, private readonly watch?: JobWatch) {
    const now = new Date().toISOString();
    this.state = { version: 1, process: thisProcess(), ...info, startedAt: now, updatedAt: now, phase: 'starting' };
    this.forget = atLastResort(() => rmSync(this.file, { force: true }));
    this.write();
    this.groupsTimer = setInterval(() => this.recordGroups(), MIN_INTERVAL_MS);
    this.groupsTimer.unref();
  }

  private readonly groupsTimer: NodeJS.Timeout;
  private groupsKey = '';
  /** The groups of the previous look (pgid:startTime). */
  private seenGroups = new Set<string>();

  /**
   * The process groups our children lead, when they changed: after a SIGKILL of this process
   * its dump tools run on (orphans), and the run that takes over ends them by this list
   * (job/orphans.ts). A group is recorded once two looks in a row saw it (it has run a second or
   * more): a run of small dumps starts and ends several short jobs between two looks, and
   * recording each of them rewrote the file every second for nothing. A child that lives less
   * than two seconds may go unrecorded; those end by themselves.
   */
  private recordGroups(): void {
    if (this.ended) return;
    const live = liveGroups().flatMap((pgid) => {
      const startTime = processStartTime(pgid);
      return startTime === undefined ? [] : [{ pgid, startTime }];
    });
    const seen = this.seenGroups;
    this.seenGroups = new Set(live.map((g) => `${g.pgid}:${g.startTime}`));
    const groups = live.filter((g) => seen.has(`${g.pgid}:${g.startTime}`));
    const key = groups.map((g) => `${g.pgid}:${g.startTime}`).join(',');
    if (key === this.groupsKey) return;
    this.groupsKey = key;
    this.state = { ...this.state, groups };
    this.write();
  }

  get file(): string {
    return runProgressFile(this.loaded.paths.stateDir);
  }

  phase(phase: string): void {
    if (this.ended) return;
    this.watch?.phase(phase);
    this.state = { ...this.state, phase };
    this.write();
  }

  /** From the dumps' onProgress: throttled, except the last one. */
  dumps(done: number, total: number, current: string): void {
    this.watch?.dumps(done, total);
    this.state = { ...this.state, phase: 'dumps', dumps: { done, total, current: current || undefined, bytes: this.state.dumps?.bytes } };
    const wait = MIN_INTERVAL_MS - (Date.now() - this.lastWrite);
    if (wait <= 0 || done >= total) {
      this.flushDumps();
      return;
    }
    // Throttled: the newest counts still reach the file within the second (the last small dumps
    // may finish just before one long dump that reports nothing for minutes).
    this.trailing ??= setTimeout(() => this.flushDumps(), wait);
    this.trailing.unref();
  }

  private trailing: NodeJS.Timeout | undefined;

  /** A dump waits for a lock (undefined: it no longer does): written at once, status shows it. */
  lockWait(what: string, wait: LockWait | undefined): void {
    if (this.ended) return;
    const { [what]: _, ...others } = this.state.lockWaits ?? {};
    const lockWaits = wait ? { ...others, [what]: wait } : others;
    this.state = { ...this.state, lockWaits: Object.keys(lockWaits).length ? lockWaits : undefined };
    this.write();
  }

  private flushDumps(): void {
    if (this.trailing) clearTimeout(this.trailing);
    this.trailing = undefined;
    if (this.ended || !this.state.dumps) return;
    this.state = { ...this.state, dumps: { ...this.state.dumps, bytes: this.dumpedBytes() } };
    this.write();
  }

  private ended = false;

  /** The job ended (whatever the outcome): nothing is running any more. */
  end(): void {
    this.ended = true;
    if (this.trailing) clearTimeout(this.trailing);
    clearInterval(this.groupsTimer);
    this.forget();
    rmSync(this.file, { force: true });
  }

  private write(): void {
    this.lastWrite = Date.now();
    try {
      // Not fsynced: the file speaks of live processes, read by status and by the run that takes
      // over after this one died; both read the page cache, which outlives any death of ours, and
      // after a machine crash the processes it names are gone too (an unreadable file says
      // nothing). Its fsyncs (file and directory, up to twice a second) held Node's main thread,
      // which schedules every dump, each waiting behind the dumps' own dirty pages.
      writeFileAtomic(this.file, JSON.stringify({ ...this.state, updatedAt: new Date().toISOString() }) + '\n', { mode: 0o644, dirMode: 0o755, sync: false });
    } catch (err) {
      this.log.debug(`cannot write the progress file ${this.file}: ${(err as Error).message}`);
    }
  }

  /** Bytes of the dumps that ended, and how to ask each running one for its bytes so far. */
  private endedBytes = 0;
  private readonly running = new Map<string, () => number | undefined>();

  /**
   * Each dump starting and ending (dumpPlan's onDump): what the file's `bytes` adds up. Walking the
   * run directory for it stat()ed every dump written so far once a second, on the main thread that
   * schedules the dumps: over 1,000 tiny databases that grew with every file.
   */
  dump(event: DumpEvent): void {
    if (event.type === 'start') this.running.set(event.what, event.written);
    else if (event.type === 'end') {
      this.running.delete(event.what);
      this.endedBytes += event.bytes ?? 0;
    }
  }

  /** Bytes written so far: every finished dump's file, and what each running one has produced. */
  private dumpedBytes(): number {
    let total = this.endedBytes;
    for (const written of this.running.values()) total += written() ?? 0;
    return total;
  }
}
