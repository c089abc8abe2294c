import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { processGone, processStartTime, type ProcessIdentity } from '../lock/lock.js';
import type { Logger } from '../log.js';

/**
 * Bacula sends a client RunScript nothing when its job is cancelled: no signal, its stdout pipe
 * stays open (the file daemon's job thread goes on reading it) and its parent stays bacula-fd
 * (docs/bacula-cancel.md). What does change is the job's connection from the director: the
 * director closes it, and the file daemon cannot close its end while its job thread waits for
 * us, so the socket stays in the daemon's fd table, CLOSE_WAIT (or gone from the TCP table once
 * a write drew a reset). That is what the hook watches.
 */
export class JobCancelledError extends BackupError {
  constructor(jobId: string | undefined, detail: string) {
    super(`cancelled by Bacula${jobId ? ` (job ${jobId})` : ''}`, ExitCode.INTERRUPTED, { jobId, detail });
  }
}

export interface CancelWatch {
  /** What is watched, for the debug log. */
  readonly describe: string;
  stop(): void;
}

export interface CancelWatchOptions {
  readonly jobId?: string;
  readonly log: Logger;
  readonly onCancel: (err: JobCancelledError) => void;
  /** The daemon that started us (default: our parent). */
  readonly daemonPid?: number;
  readonly intervalMs?: number;
  /** A closed connection counts once it stayed closed this long (another job's closes within milliseconds). */
  readonly graceMs?: number;
}

const ESTABLISHED = '01';
const LISTEN = '0A';

/**
 * Watch the job's director connection in the file daemon that started this process; undefined
 * when the parent holds no connection accepted on a port it listens on (not started by a Bacula
 * daemon: a terminal, a wrapper script), or its /proc entries cannot be read.
 */
export function watchBaculaCancel(opts: CancelWatchOptions): CancelWatch | undefined {
  const pid = opts.daemonPid ?? process.ppid;
  const startTime = processStartTime(pid);
  if (pid <= 1 || startTime === undefined) return undefined;
  const daemon: ProcessIdentity = { pid, host: hostname(), startTime };
  const first = snapshot(pid);
  if (!first) return undefined;
  const listening = new Set([...first.tcp.values()].filter((s) => s.state === LISTEN).map((s) => s.localPort));
  const established = [...first.held].filter((ino) => first.tcp.get(ino)?.state === ESTABLISHED);
  // Connections accepted on the daemon's own port: the directors' (this job's among them). The
  // daemon's own connections out: to storage daemons (this job's among them).
  const director = new Set(established.filter((ino) => listening.has(first.tcp.get(ino)!.localPort)));
  const storage = new Set(established.filter((ino) => !listening.has(first.tcp.get(ino)!.localPort)));
  if (!director.size) return undefined;
  const interval = opts.intervalMs ?? 1000;
  const grace = opts.graceMs ?? 2000;
  let closedSince: number | undefined;
  let stopped = false;
  const cancel = (detail: string): void => {
    stop();
    opts.onCancel(new JobCancelledError(opts.jobId, detail));
  };
  const check = (): void => {
    if (stopped) return;
    if (processGone(daemon)) return cancel(`the Bacula daemon that started it (pid ${pid}) is gone`);
    const now = snapshot(pid);
    if (!now) return;
    // A connection the daemon closed itself belonged to another job that ended: not ours.
    for (const set of [director, storage]) for (const ino of set) if (!now.held.has(ino)) set.delete(ino);
    if (!director.size) return cancel(`the director's connection of the job was closed (bacula-fd pid ${pid})`);
    const closed = (set: Set<string>): string[] => [...set].filter((ino) => now.tcp.get(ino)?.state !== ESTABLISHED);
    // Held by the daemon but closed by the other side. A connection that only knocked at the
    // daemon's port (a TCP monitor) lingers like that too, for the daemon's few seconds of delay
    // after a failed hello: the job's storage connection, closed with it, tells the two apart.
    const dir = closed(director);
    const sd = closed(storage);
    if (!dir.length || (storage.size > 0 && !sd.length)) {
      closedSince = undefined;
      return;
    }
    closedSince ??= Date.now();
    if (Date.now() - closedSince >= grace) cancel(`the director and storage daemon closed the job's connections to bacula-fd (pid ${pid}, sockets ${[...dir, ...sd].join(', ')})`);
  };
  const timer = setInterval(check, interval);
  timer.unref();
  function stop(): void {
    stopped = true;
    clearInterval(timer);
  }
  const describe = `Bacula daemon pid ${pid}, director connection socket(s) ${[...director].join(', ')}, storage ${[...storage].join(', ') || 'none'}`;
  opts.log.debug(`watching for a cancel of the Bacula job: ${describe}`);
  return { describe, stop };
}

interface TcpSocket {
  readonly localPort: number;
  readonly state: string;
}

/** The socket inodes `pid` holds, and the TCP table of its network namespace by inode. */
function snapshot(pid: number): { held: Set<string>; tcp: Map<string, TcpSocket> } | undefined {
  const held = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue; // closed meanwhile
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) held.add(m[1]!);
    }
  } catch {
    return undefined;
  }
  const tcp = new Map<string, TcpSocket>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !held.has(f[9]!)) continue;
      tcp.set(f[9]!, { localPort: parseInt(f[1]!.split(':')[1]!, 16), state: f[3]! });
    }
  }
  return { held, tcp };
}
