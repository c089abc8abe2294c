import { createLogUpdate } from 'log-update';
import picocolors from 'picocolors';
import type { DumpEvent } from '../dumps/run-dumps.js';
import { sizeIn } from './status.js';

/**
 * What a job reports while it works, besides `<state.dir>/running.json` (job/run-progress.ts
 * forwards each of that file's events here, so the screen and the file tell the same story).
 */
export interface JobWatch {
  /** 'dumps', 'backup', 'prune', 'recording'. */
  phase(phase: string): void;
  /** Databases done of total (the same counts running.json gets). */
  dumps(done: number, total: number): void;
  /** One dump starting or ending, with the bytes it has written so far. */
  dump(event: DumpEvent): void;
  /** The engine's own progress line (restic's status, borg's, duplicity's), while it backs up or fetches. */
  engine(text: string): void;
}

/** Colour only on a terminal that wants it: not with NO_COLOR (any non-empty value, no-color.org), nor TERM=dumb. */
export function wantsColour(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR && env.TERM !== 'dumb';
}

interface InFlight {
  readonly what: string;
  /** What is done to it when there is no byte count to show ('loading'). */
  readonly doing?: string;
  readonly site: string;
  readonly startedAt: number;
  readonly expectedBytes?: number;
  readonly expectedMs?: number;
  readonly written: () => number | undefined;
}

/** Redrawn this often while something runs (bytes grow between events). */
const REDRAW_MS = 250;
/** A command that is over sooner (an error found at once) shows no block: it would only flicker before its message. */
const SHOW_AFTER_MS = 300;

const mib = (n: number): string => sizeIn(n, 1024);
const seconds = (ms: number): string => (ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`);

/**
 * The live block on a terminal: the phase, databases done of total with bytes, rate and the time
 * left (estimated from the previous run's sizes), and one line per dump in flight. log-update
 * redraws it in place; whatever else is written to stderr meanwhile (a warning from the log) is
 * printed above it, not through it. Only ever created when stderr is a TTY: cron sees none of it.
 */
export class TerminalProgress implements JobWatch {
  private readonly render: ReturnType<typeof createLogUpdate>;
  private readonly colours: ReturnType<typeof picocolors.createColors>;
  private readonly inFlight = new Map<string, InFlight>();
  private readonly startedAt = Date.now();
  private currentPhase = 'starting';
  private phaseStartedAt = Date.now();
  private done = 0;
  private total = 0;
  private failed = 0;
  private finishedBytes = 0;
  /** The previous run's time of the dumps not finished yet (undefined: no previous run to go by). */
  private expectedMsLeft: number | undefined;
  private slots = 1;
  private dumpsStartedAt: number | undefined;
  private dumpsEndedAt: number | undefined;
  /** When the plan was made: the overall rate counts from here (listing the databases writes nothing). */
  private plannedAt: number | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly originalWrite: typeof process.stderr.write;
  private stopped = false;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly title: string,
    options: { colour?: boolean; engine?: string } = {},
  ) {
    this.engineName = options.engine;
    this.colours = picocolors.createColors(options.colour ?? wantsColour(stream));
    this.originalWrite = stream.write.bind(stream) as typeof process.stderr.write;
    // log-update writes through the original write; anything else written to the stream while
    // the block is up goes above it, as it is, and the block is drawn again below. A terminal
    // that reports no size (0x0: script(1), a serial console) gets log-update's defaults: with
    // 0 rows it would draw nothing at all.
    const own = { write: (s: string) => this.originalWrite(s), get columns() { return stream.columns || undefined; }, get rows() { return stream.rows || undefined; } };
    this.render = createLogUpdate(own as unknown as NodeJS.WriteStream, { showCursor: true });
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      this.printAbove(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    }) as typeof process.stderr.write;
    this.timer = setInterval(() => this.draw(), REDRAW_MS);
    this.timer.unref();
    this.draw();
  }

  private readonly engineName: string | undefined;

  phase(phase: string): void {
    if (phase === this.currentPhase) return;
    if (this.currentPhase === 'dumps' && this.dumpsStartedAt !== undefined) this.dumpsEndedAt ??= Date.now();
    // A phase that ended leaves one line above the block: what it did and how long it took.
    if (this.leavesLine()) this.printAbove(this.phaseLine() + '\n');
    this.currentPhase = phase;
    this.phaseStartedAt = Date.now();
    if (phase === 'dumps') this.dumpsStartedAt ??= Date.now();
    this.draw();
  }

  dumps(done: number, total: number): void {
    this.done = done;
    this.total = total;
  }

  /**
   * A command that is not a job (restore) says what it is doing now, in its own words; shown with
   * the time it has taken so far, replaced by the next step.
   */
  step(text: string): void {
    this.currentPhase = 'step';
    this.stepText = text;
    this.engineText = '';
    this.phaseStartedAt = Date.now();
    this.draw();
  }

  private stepText = '';
  private engineText = '';

  engine(text: string): void {
    this.engineText = text;
  }

  /** `doing`: what a line without bytes says ('loading' for verify); a dump's says 'starting' until its file exists. */
  dump(event: DumpEvent, doing?: string): void {
    if (event.type === 'plan') {
      this.total = event.total;
      this.slots = Math.max(1, event.slots);
      this.expectedMsLeft = event.expectedMs;
      this.plannedAt = Date.now();
      this.dumpsStartedAt ??= Date.now();
    } else if (event.type === 'start') {
      this.inFlight.set(event.what, { what: event.what, doing, site: event.site, startedAt: Date.now(), expectedBytes: event.expectedBytes, expectedMs: event.expectedMs, written: event.written });
    } else {
      const ended = this.inFlight.get(event.what);
      if (this.expectedMsLeft !== undefined) this.expectedMsLeft -= ended?.expectedMs ?? 0;
      this.inFlight.delete(event.what);
      this.finishedBytes += event.bytes ?? 0;
      if (event.status === 'failed') this.failed++;
    }
    this.draw();
  }

  /** The block goes; the phase lines stay. The caller prints its own last line (where it all went). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.stream.write = this.originalWrite;
    this.render.clear();
    if (this.leavesLine()) {
      this.dumpsEndedAt ??= this.currentPhase === 'dumps' ? Date.now() : this.dumpsEndedAt;
      this.originalWrite(this.phaseLine() + '\n');
    }
    this.render.done();
  }

  /**
   * From the previous run's time of each dump not finished yet: the work left shared by the
   * slots, but never less than the longest dump in flight still needs. Sizes would do the same
   * from bytes, but a dump's bytes are measured before compression and last night's after.
   */
  private timeLeft(now: number): number | undefined {
    if (this.expectedMsLeft === undefined) return undefined;
    let work = this.expectedMsLeft;
    let longest = 0;
    for (const d of this.inFlight.values()) {
      if (d.expectedMs === undefined) continue;
      const elapsed = now - d.startedAt;
      work -= Math.min(elapsed, d.expectedMs);
      longest = Math.max(longest, d.expectedMs - elapsed);
    }
    const left = Math.max(work / this.slots, longest);
    return left > 0 ? left : undefined;
  }

  /** Text written whole above the block (the block erased, then drawn again below it). */
  private printAbove(text: string): void {
    this.render.clear();
    this.originalWrite(text);
    this.draw();
  }

  private bytesNow(): number {
    let n = this.finishedBytes;
    for (const d of this.inFlight.values()) n += d.written() ?? 0;
    return n;
  }

  /** Phases that leave a line when they end; `verify` only as a step of nightly (verify by hand prints a line per dump and its verdict). */
  private leavesLine(): boolean {
    return this.currentPhase === 'dumps' || this.currentPhase === 'backup' || this.currentPhase === 'prune' || (this.currentPhase === 'verify' && this.verifyTally !== undefined);
  }

  /**
   * nightly's verification, after the job: the same block as `verify` (the dump loading now,
   * its size and time, done of total); its end leaves one line with the outcomes counted here.
   */
  beginVerifyStep(): void {
    this.phase('verify');
    this.inFlight.clear();
    this.done = 0;
    this.total = 0;
    this.verifyTally = { ok: 0, failed: 0, unchecked: 0 };
    this.draw();
  }

  /** One dump of nightly's verification begins: `index` of `total`, its size from the manifest. */
  verifyStart(what: string, site: string, index: number, total: number, bytes: number | undefined, doing: string): void {
    this.done = index;
    this.total = total;
    this.inFlight.clear();
    this.inFlight.set(what, { what, doing, site, startedAt: Date.now(), expectedBytes: bytes, written: () => undefined });
    this.draw();
  }

  /** …and ends. */
  verifyEnd(outcome: 'ok' | 'failed' | 'error'): void {
    this.inFlight.clear();
    this.done++;
    if (this.verifyTally) this.verifyTally[outcome === 'error' ? 'unchecked' : outcome]++;
    this.draw();
  }

  private verifyTally: { ok: number; failed: number; unchecked: number } | undefined;

  /** The one line a finished phase leaves. */
  private phaseLine(): string {
    const c = this.colours;
    if (this.currentPhase === 'verify' && this.verifyTally) {
      const t = this.verifyTally;
      const failed = t.failed ? c.red(`${t.failed} failed`) : '0 failed';
      const unchecked = t.unchecked ? `, ${c.yellow(`${t.unchecked} not checked`)}` : '';
      return `${c.bold('verify')}  ${t.ok} of ${t.ok + t.failed + t.unchecked} dump(s) verified, ${failed}${unchecked} in ${seconds(Date.now() - this.phaseStartedAt)}`;
    }
    if (this.currentPhase === 'dumps') {
      const ms = (this.dumpsEndedAt ?? Date.now()) - (this.dumpsStartedAt ?? this.startedAt);
      const failed = this.failed ? c.red(`, ${this.failed} failed`) : '';
      return `${c.bold('dumps')}   ${this.done} of ${this.total} database dump(s), ${mib(this.finishedBytes)} in ${seconds(ms)}${failed}`;
    }
    const what = this.currentPhase === 'backup' ? 'backup' : 'retention (prune)';
    return `${c.bold(this.currentPhase)}  ${this.engineName ?? 'engine'} ${what} took ${seconds(Date.now() - this.phaseStartedAt)}`;
  }

  private draw(): void {
    if (this.stopped) return;
    const c = this.colours;
    const now = Date.now();
    if (now - this.startedAt < SHOW_AFTER_MS) return;
    const lines: string[] = [];
    if (this.currentPhase === 'verify') {
      lines.push(`${c.cyan(c.bold(this.title))} ${c.bold('verifying')}  ${this.done}/${this.total} dumps  ${c.dim(seconds(now - this.phaseStartedAt))}`);
      for (const d of this.inFlight.values()) {
        const of = d.expectedBytes ? c.dim(`  (dump ${mib(d.expectedBytes)})`) : '';
        lines.push(`  ${c.yellow('›')} ${d.what} ${c.dim(`(${d.site})`)}  ${d.doing ?? ''} ${seconds(now - d.startedAt)}${of}`);
      }
    } else if (this.currentPhase === 'step') {
      // A fetch's own progress (restore: borg extract, a Bacula restore job) beside the step it belongs to.
      const own = this.engineText ? `  ${this.engineText}` : '';
      lines.push(`${c.cyan(c.bold(this.title))} ${this.stepText}${own}  ${c.dim(seconds(now - this.phaseStartedAt))}`);
    } else if (this.currentPhase === 'dumps' || (this.currentPhase === 'starting' && this.total)) {
      const bytes = this.bytesNow();
      const elapsed = now - (this.dumpsStartedAt ?? this.startedAt);
      const dumping = now - (this.plannedAt ?? now);
      const rate = dumping > 500 ? (bytes * 1000) / dumping : undefined;
      const left = this.timeLeft(now);
      const parts = [`${this.done}/${this.total} databases`, mib(bytes)];
      if (rate !== undefined) parts.push(`${mib(rate)}/s`);
      if (left !== undefined) parts.push(`about ${seconds(left)} left`);
      parts.push(c.dim(seconds(elapsed)));
      lines.push(`${c.cyan(c.bold(this.title))} ${c.bold('dumping')}  ${parts.join('  ')}${this.failed ? c.red(`  ${this.failed} failed`) : ''}`);
      for (const d of [...this.inFlight.values()].sort((a, b) => a.startedAt - b.startedAt)) {
        const written = d.written();
        const ms = now - d.startedAt;
        const size = written === undefined ? c.dim(d.doing ?? 'starting') : `${mib(written)}${ms > 500 ? `  ${mib((written * 1000) / ms)}/s` : ''}`;
        const of = d.expectedBytes ? c.dim(`  (last run ${mib(d.expectedBytes)})`) : '';
        lines.push(`  ${c.yellow('›')} ${d.what} ${c.dim(`(${d.site})`)}  ${size}${of}`);
      }
    } else if (this.currentPhase === 'backup' || this.currentPhase === 'prune') {
      const what = this.currentPhase === 'backup' ? `${this.engineName ?? 'engine'} backup` : `${this.engineName ?? 'engine'} retention (prune)`;
      const own = this.currentPhase === 'backup' && this.engineText ? `  ${this.engineText}` : '';
      lines.push(`${c.cyan(c.bold(this.title))} ${c.bold(what)}${own}  ${c.dim(seconds(now - this.phaseStartedAt))}`);
    } else {
      lines.push(`${c.cyan(c.bold(this.title))} ${this.currentPhase}  ${c.dim(seconds(now - this.startedAt))}`);
    }
    this.render(lines.join('\n'));
  }
}
