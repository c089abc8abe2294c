import { getPriority, setPriority } from 'node:os';
import type { Logger } from '../log.js';
import { cmd } from './command.js';
import { run } from './run.js';
import { whichSystem } from './which.js';

export interface PrioritySettings {
  /** CPU priority, -20 (first) to 19 (last). */
  readonly nice: number;
  /** I/O class; best-effort means its lowest level, 7. */
  readonly ionice: 'none' | 'best-effort' | 'idle';
}

const IONICE_CLASS = { 'best-effort': ['-c', '2', '-n', '7'], idle: ['-c', '3'] } as const;

/**
 * Run `work` with our process at the configured CPU and I/O priority; every child spawned
 * meanwhile (dump tools, compressors, engines) inherits it. Both are restored afterwards when
 * the kernel lets us (root may raise priority again; tests run many jobs in one process).
 *
 * What this does not reach: mariadbd's and postgres' own threads do the server half of every
 * dump at the server's priority, and ionice classes mean something only under the bfq I/O
 * scheduler (mq-deadline and none ignore them). Pacing the server side is lib/dumps/throttle.ts.
 */
export async function withPriority<T>(settings: PrioritySettings, log: Logger, work: () => Promise<T>): Promise<T> {
  const restore: (() => Promise<void>)[] = [];
  const before = safe(() => getPriority(process.pid));
  if (before !== undefined && before !== settings.nice) {
    // The main thread: children are forked from it (on Linux a priority is per thread).
    if (attempt(() => setPriority(process.pid, settings.nice))) {
      restore.push(async () => void attempt(() => setPriority(process.pid, before)));
    } else log.debug('priority: cannot change nice', { nice: settings.nice });
  }
  const ionice = whichSystem('ionice');
  if (settings.ionice !== 'none' && ionice) {
    const pid = String(process.pid);
    const was = await run(cmd(ionice, ['-p', pid]), { timeoutMs: 10_000 }).then((r) => parseIonice(r.stdout), () => undefined);
    const set = await run(cmd(ionice, [...IONICE_CLASS[settings.ionice], '-p', pid]), { timeoutMs: 10_000 }).then(() => true, (err: Error) => (log.debug('priority: ionice failed', { error: err.message }), false));
    if (set && was) restore.push(async () => void (await run(cmd(ionice, [...was, '-p', pid]), { timeoutMs: 10_000 }).catch(() => undefined)));
  }
  try {
    return await work();
  } finally {
    for (const r of restore.reverse()) await r();
  }
}

/** `ionice -p` prints e.g. "best-effort: prio 4", "none: prio 4" or "idle". */
export function parseIonice(out: string): string[] | undefined {
  const m = /^(none|realtime|best-effort|idle)(?::\s*prio\s*(\d+))?/.exec(out.trim());
  if (!m) return undefined;
  const cls = { none: '0', realtime: '1', 'best-effort': '2', idle: '3' }[m[1] as 'none'];
  return m[2] !== undefined && cls !== '0' && cls !== '3' ? ['-c', cls, '-n', m[2]] : ['-c', cls];
}

function attempt(f: () => void): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}
