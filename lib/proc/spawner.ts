import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';
import { secretDirParent } from '../secret-dir.js';
import { startChild, type StartedChild } from './child.js';
import { describe, type Command } from './command.js';
import type { Ended } from './lifecycle.js';
import { forgetGroup, terminate, trackGroup } from './process-group.js';

/**
 * Starts short commands for us from small bash processes, so that Node does not fork itself for
 * each one. A spawn from Node forks its whole address space, on our main thread: over a thousand
 * tiny databases that was most of the main thread's time (docs/performance.md, tiny_vs_loop). A
 * small bash forks in a fraction of that, on its own thread of execution.
 *
 * Each worker runs one job at a time: stdin, stdout and stderr are files (stdout and stderr are
 * created new, 0600, never over an existing file: bash's noclobber opens them O_EXCL), the job
 * leads its own process group (set -m) so a time limit or our SIGTERM can kill all it started,
 * and the worker reports its pid when it starts and its status when it ends. The command runs
 * with the environment Node had when the worker started, plus the command's own `env`; commands
 * that need another user or a bare environment are not for this (canRun), they take spawn().
 */
export interface SpawnRequest {
  readonly command: Command;
  /** A file to read (/dev/null for none). */
  readonly stdin: string;
  /** Created for the job; fails if it exists. */
  readonly stdout: string;
  /** Created for the job; fails if it exists. */
  readonly stderr: string;
}

export interface SpawnedProcess {
  /**
   * Settles once, with how the job ended (its stderr is in the job's file: stderrTail is ''); never
   * rejects (a dead worker reads as a failed start).
   */
  readonly ended: Promise<Ended>;
  /** terminate() the job's process group (once its pid is known; queued until then). */
  terminate(graceMs?: number): void;
}

// Job N of a worker is the file DIR/N, sourced: `f=('cwd' 'stdin' 'stdout' 'stderr' 'number of
// env entries' 'K=V' (or 'K' to unset) … 'file' 'arg' …)`; one byte on its stdin says it is there.
// Bash reads a pipe one byte per read(2) (it cannot seek back), 2.4 ms per job of a dump's argv
// (measured with perf); a sourced file is read in one. The redirections apply left to right, so
// a stdout that cannot be created is reported in the job's stderr file. `wait` gives 128+N for a
// job killed by signal N.
// A TERM to the worker reaches its running job's group too: Node learns the job's pid from the
// worker's "S pid" line, which can arrive after a terminateAll() that would then miss the job (an
// orphan dump holding its table locks). `j` is cleared once the job is waited for: never a stale group.
export const WORKER = [
  "set -m",
  "umask 077",
  "set -o noclobber",
  "j=",
  "trap 'if [[ -n $j ]]; then kill -TERM -- \"-$j\" 2>/dev/null; fi; exit 143' TERM",
  "i=0",
  "while IFS= read -r -N 1 _; do",
  "  i=$((i + 1))",
  "  f=()",
  "  if ! . \"$1/$i\" || ((${#f[@]} < 6)); then printf 'N\\n'; continue; fi",
  "  ne=${f[4]}",
  "  (",
  "    for kv in \"${f[@]:5:ne}\"; do if [[ $kv == *=* ]]; then export \"$kv\"; else unset \"$kv\"; fi; done",
  "    if [[ -n ${f[0]} ]]; then cd -- \"${f[0]}\" || exit 126; fi",
  "    exec \"${f[@]:5+ne}\"",
  "  ) 2>\"${f[3]}\" <\"${f[1]}\" >\"${f[2]}\" &",
  "  j=$!",
  "  printf 'S %d\\n' \"$j\"",
  "  wait \"$j\"",
  "  st=$?",
  "  j=",
  "  printf 'E %d\\n' \"$st\"",
  "done",
].join('\n');

/** What a worker can start the way spawn() would: same user, the inherited environment. */
export function canRun(command: Command): boolean {
  return command.uid === undefined && command.gid === undefined && command.inheritEnv !== false && !command.file.includes('\0') && command.args.every((a) => !a.includes('\0'));
}

class Worker {
  readonly process: StartedChild;
  #current: ((line: string) => void) | undefined;
  #dead: string | undefined;
  #jobs = 0;
  #jobFile: string | undefined;

  /** `dir`: this worker's own 0700 directory for its job files. */
  constructor(
    bash: string,
    private readonly dir: string,
    onExit: (w: Worker) => void,
  ) {
    this.process = startChild({ file: bash, args: ['-c', WORKER, 'asb-spawner', dir] }, { stdin: 'pipe', stdout: 'pipe', stderr: 'ignore' });
    createInterface({ input: this.process.stdout! }).on('line', (line) => this.#current?.(line));
    void this.process.ended.then((end) => {
      const why = end.startError !== undefined ? `${bash} could not start: ${end.startError}` : `the spawner (${bash}) ended (${end.signal ?? `exit ${end.exitCode}`})`;
      this.#dead ??= why;
      this.#current?.(`X ${why}`);
      onExit(this);
    });
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  start(job: SpawnRequest, done: () => void): SpawnedProcess {
    const started = Date.now();
    let pid: number | undefined;
    let pending: number | undefined;
    let resolve!: (end: Ended) => void;
    const ended = new Promise<Ended>((r) => (resolve = r));
    const command = describe(job.command);
    // Once over, the job's pid may be anybody's: no signal goes to it any more.
    let over = false;
    const finish = (end: Pick<Ended, 'exitCode' | 'signal' | 'startError'>): void => {
      if (over) return;
      over = true;
      this.#current = undefined;
      if (this.#jobFile) rmSync(this.#jobFile, { force: true });
      this.#jobFile = undefined;
      if (pid !== undefined) forgetGroup(pid);
      resolve({ command, ...end, stderrTail: end.startError ?? '', durationMs: Date.now() - started, timedOut: false });
      done();
    };
    const stop = (graceMs: number): void => {
      if (!over) void terminate(pid!, graceMs);
    };
    this.#current = (line) => {
      if (line.startsWith('S ')) {
        pid = Number(line.slice(2));
        trackGroup(pid);
        if (pending !== undefined) stop(pending);
      } else if (line.startsWith('E ')) {
        const status = Number(line.slice(2));
        const name = status > 128 ? signalName(status - 128) : undefined;
        finish(name ? { exitCode: null, signal: name } : { exitCode: status, signal: null });
      } else if (line === 'N') {
        finish({ exitCode: null, signal: null, startError: `the spawner could not read its job ${this.#jobFile}` });
      } else if (line.startsWith('X ')) {
        // The worker died under a running job (our SIGTERM, a crash): the job is stopped too, and
        // not reported ended while its group is still there (it may hold a table lock).
        const why = { exitCode: null, signal: null, startError: line.slice(2) };
        this.#current = undefined; // the worker's 'error' and 'exit' may both say so
        if (pid === undefined) finish(why);
        else void terminate(pid).then(() => finish(why));
      }
    };
    if (this.#dead) {
      finish({ exitCode: null, signal: null, startError: this.#dead });
    } else {
      const c = job.command;
      const env = Object.entries(c.env ?? {}).map(([k, v]) => (v === undefined ? k : `${k}=${v}`));
      const fields = [c.cwd ?? '', job.stdin, job.stdout, job.stderr, String(env.length), ...env, c.file, ...c.args];
      const file = join(this.dir, String(++this.#jobs));
      try {
        writeFileSync(file, `f=(${fields.map(shellQuote).join(' ')})\n`, { mode: 0o600, flag: 'wx' });
      } catch (err) {
        // A full /dev/shm: the job never ran, which its caller reports like any failed start.
        this.#jobs--; // the worker still waits for job number #jobs + 1
        finish({ exitCode: null, signal: null, startError: `could not write the job file ${file}: ${err instanceof Error ? err.message : String(err)}` });
        return { ended, terminate: () => undefined };
      }
      this.#jobFile = file;
      this.process.stdin!.write('\n');
    }
    return {
      ended,
      terminate: (graceMs = 5000) => {
        if (pid !== undefined) stop(graceMs);
        else pending = graceMs;
      },
    };
  }
}

/** Single quotes for bash: everything but NUL (canRun) is literal inside them. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function signalName(n: number): NodeJS.Signals | undefined {
  return (Object.entries(constants.signals) as [NodeJS.Signals, number][]).find(([, v]) => v === n)?.[0];
}

/** A pool of workers: as many as jobs run at once, started when first needed. */
export class Spawner {
  readonly #idle: Worker[] = [];
  readonly #all = new Set<Worker>();
  #closed = false;
  #dir: string | undefined;
  #started = 0;
  #scratch = 0;

  constructor(private readonly bash = 'bash') {}

  /** A fresh path in the spawner's own 0700 directory (memory, see secretDirParent): for a job's stderr. */
  scratchPath(name: string): string {
    return join(this.#root(), `${name}.${++this.#scratch}`);
  }

  /** Made on first use. Job files name only paths and argv (secrets are in option files), kept in memory anyway. */
  #root(): string {
    return (this.#dir ??= mkdtempSync(join(secretDirParent(), 'asb-spawner-')));
  }

  start(job: SpawnRequest): SpawnedProcess {
    if (this.#closed) throw new Error('spawner: closed');
    if (!canRun(job.command)) throw new Error(`spawner: ${job.command.file} needs spawn() (another user, a bare environment)`);
    let worker = this.#idle.pop();
    while (worker?.dead) worker = this.#idle.pop();
    if (!worker) {
      const dir = join(this.#root(), String(this.#started++));
      mkdirSync(dir, { mode: 0o700 });
      worker = new Worker(this.bash, dir, (w) => this.#all.delete(w));
      this.#all.add(worker);
    }
    const w = worker;
    return w.start(job, () => {
      if (!w.dead && !this.#closed) this.#idle.push(w);
    });
  }

  /** Workers end when their stdin closes (after the job they run, if any: kill that first). */
  close(): void {
    this.#closed = true;
    for (const w of this.#all) w.process.stdin?.end();
    this.#idle.length = 0;
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
  }
}
