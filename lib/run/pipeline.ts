import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { CommandError, tail } from '../errors.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { spawnOptions, Watch } from './lifecycle.js';
import { terminate, track } from './process-group.js';
import { openSocketReader, relay, streamReader, type ChunkReader } from './reused-reader.js';

export interface PipelineOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  secrets?: readonly string[];
  /**
   * Accept a stage that exited non-zero (getfacl exits 1 when a file vanished mid-walk but wrote
   * everything else). Its StageResult is still returned, so the caller can report it.
   */
  tolerate?: (stage: StageResult, index: number) => boolean;
  /**
   * See the output of stage `after` on its way: Node relays it into the next stage (or, for the
   * last stage, into the file) and hands every chunk to `onData`. This is how a dump is checked
   * while it streams (its trailer) instead of decompressing the finished file again; it costs one
   * extra copy through Node, which is less than the re-read. A chunk is valid only during the
   * onData call.
   */
  tap?: {
    readonly after: number;
    readonly onData: (chunk: Buffer) => void;
    /** Paces the tapped stage's output (dumps.max_rate): the relay reads on only once it returns. */
    readonly pace?: (bytes: number) => Promise<void>;
  };
  /**
   * false: do not fsync `file` (the caller makes a whole run durable at once with one syncfs,
   * lib/run/sync-fs.ts, before anything claims it is complete). Default true.
   */
  fsync?: boolean;
}

export interface StageResult {
  readonly command: string;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderrTail: string;
  /** From spawn to exit (for a dump tool holding LOCK TABLES: an upper bound of the lock time). */
  readonly durationMs: number;
}

export interface PipelineResult {
  readonly bytes: number;
  readonly sha256: string;
  readonly durationMs: number;
  readonly stages: readonly StageResult[];
}

const STDERR_KEEP = 8192;

/**
 * `a | b | c > file`, without a shell. Stages are joined by kernel pipes (the dump never passes
 * through JavaScript: execa routes piped streams through Node, which we measured to be slow and
 * to run out of memory on multi-GB dumps). The last stage writes `file` itself (created 0600,
 * fsynced): its stdout is the file's descriptor, as with a shell's `> file`. Node then hashes
 * the finished file from the page cache, which costs a fraction of relaying it through Node to
 * hash it on its way (docs/performance.md).
 * Every stage's exit status is checked: a dump tool that dies mid-way behind a compressor that
 * exits 0 is still a failure. The caller owns `file` (a temporary name) and removes it on error.
 */
// Node's stdio "pipes" are socketpairs: a writer whose reader died may see ECONNRESET (errno
// 104) instead of EPIPE (32): mariadb-dump says "Got errno 104 on write", coreutils print the
// strerror text ("yes: standard output: Connection reset by peer", found by test/run.test.ts).
function brokenPipe(r: StageResult): boolean {
  return r.signal === 'SIGPIPE' || r.exitCode === 141 || /errno (32|104) on write|errno 32\b|broken pipe|EPIPE|connection reset by peer/i.test(r.stderrTail);
}

export async function pipeToFile(stages: readonly Command[], file: string, options: PipelineOptions = {}): Promise<PipelineResult> {
  if (stages.length === 0) throw new Error('pipeToFile needs at least one stage');
  const started = Date.now();
  const children: ChildProcess[] = [];
  const stderrs: string[] = [];
  const exits: Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error; ms: number }>[] = [];
  const tap = options.tap;
  if (tap && (tap.after < 0 || tap.after >= stages.length)) throw new Error(`pipeToFile: no stage ${tap.after} to tap`);
  const relays: Promise<Error | undefined>[] = [];
  const watch = new Watch(options, () => children.forEach((c) => terminate(c)));

  // Created exclusively: a leftover temp file of a crashed run is never appended to.
  const handle = await open(file, 'wx+', 0o600);
  const last = stages.length - 1;
  // A tapped last stage is seen by Node on its way into the file (the only relay of the output).
  const lastTapped = tap?.after === last;
  const out = lastTapped ? createWriteStream('', { fd: handle, autoClose: false }) : undefined;
  // The tapped stage writes into a socket Node reads into one reused buffer (reused-reader.ts:
  // a pipe's new 64 KiB Buffer per read kept V8's GC marking its heap); a pipe when there is none.
  const socket = tap ? await openSocketReader() : undefined;
  let tapped: ChunkReader | undefined = socket?.reader;
  try {
    let upstream: NodeJS.ReadableStream | 'ignore' = 'ignore';
    for (const [i, stage] of stages.entries()) {
      // After the tapped stage, Node writes this stage's stdin itself (a relay, below).
      const relayed = tap !== undefined && i === tap.after + 1;
      const spawnedAt = Date.now();
      const stdout = i === last && !lastTapped ? handle.fd : tap?.after === i && socket ? socket.theirs : 'pipe';
      const child = spawn(stage.file, [...stage.args], { ...spawnOptions(stage), stdio: [relayed ? 'pipe' : (upstream as never), stdout, 'pipe'] });
      track(child);
      children.push(child);
      // The child has its own copy: ours closed, the reader sees the end when the child's is.
      if (tap?.after === i) socket?.theirs.destroy();
      if (tap?.after === i) tapped ??= streamReader(child.stdout!);
      stderrs[i] = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (d: string) => {
        stderrs[i] = (stderrs[i] + d).slice(-STDERR_KEEP);
      });
      exits.push(
        new Promise((resolve) => {
          child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err, ms: Date.now() - spawnedAt }));
          child.once('close', (code, signal) => resolve({ code, signal, ms: Date.now() - spawnedAt }));
        }),
      );
      if (relayed && child.stdin) {
        // A reader that died shows as EPIPE here; its own exit status is what gets reported.
        child.stdin?.on('error', () => undefined);
        relays.push(relay(tapped!, tap.onData, child.stdin, tap.pace).then(() => undefined, (err: Error) => err));
      }
      upstream = child.stdout as NodeJS.ReadableStream;
    }
    // The parent's copy of each intermediate pipe must not keep the reader alive (a relayed
    // one is read by Node until its end).
    for (const [i, c] of children.slice(0, -1).entries()) if (tap?.after !== i) c.stdout?.destroy();

    const writing = out ? relay(tapped!, tap!.onData, out, tap!.pace).then(() => undefined, (err: Error) => err) : undefined;
    const results = await Promise.all(exits);
    const writeError = await writing;
    // A relay that broke while every stage exited 0 (the tap threw) left the next stage with a
    // short input it compressed happily: that is a failure too.
    const relayError = (await Promise.all(relays)).find((e) => e !== undefined);
    // fsync is per file, not per descriptor: the data is on disk before anyone renames it.
    if (!writeError && options.fsync !== false) await handle.sync();

    const stageResults: StageResult[] = results.map((r, i) => ({
      command: describe(stages[i]!, options.secrets),
      exitCode: r.code,
      signal: r.signal,
      stderrTail: redact(tail(r.spawnError ? String(r.spawnError.message) : stderrs[i] ?? ''), options.secrets),
      durationMs: r.ms,
    }));
    const failed = stageResults.filter((r, i) => r.exitCode !== 0 && !(r.signal === null && options.tolerate?.(r, i)));
    if (failed.length > 0 || writeError || relayError || watch.timedOut || watch.cancelled) {
      // A stage that failed on a broken pipe only says its reader died: name the root cause
      // first. Dump tools ignore SIGPIPE and exit with an error instead (mariadb-dump: exit 5,
      // "Got errno 32 on write"), so the stderr counts too. When every failure is a broken pipe
      // and the write to `file` failed (ENOSPC, EROFS), that write is the cause.
      // Likewise a relay that broke (the tap threw): Node closed the tapped stage's output.
      const primary = failed.find((r) => !brokenPipe(r)) ?? (writeError || relayError ? undefined : failed[0]);
      const why =
        primary || watch.timedOut || watch.cancelled
          ? watch.why({ signal: primary?.signal, exitCode: primary?.exitCode }, true)
          : writeError
            ? `writing ${file} failed: ${writeError.message}`
            : `relaying its output failed: ${relayError?.message}`;
      // The message names the program, not its whole argv: a cron summary line is cut at 200
      // characters and the long option list pushed the actual error out of it. The full
      // command line stays in the error's `command` (the manifest and the log keep it).
      const shown = primary ? basename(stages[stageResults.indexOf(primary)]!.file) : stages.map((s) => basename(s.file)).join(' | ');
      const detail = primary ? errorLine(primary.stderrTail) : undefined;
      throw new CommandError({
        message: `${shown}: ${why}${detail ? `: ${detail}` : ''}`,
        command: stageResults.map((s) => s.command).join(' | '),
        exitCode: primary?.exitCode ?? undefined,
        signal: primary?.signal ?? undefined,
        stderrTail: primary?.stderrTail ?? String(writeError ?? ''),
        timedOut: watch.timedOut,
      });
    }
    const { bytes, sha256 } = await hashFile(handle);
    return { bytes, sha256, durationMs: Date.now() - started, stages: stageResults };
  } finally {
    watch.end();
    children.forEach((c) => {
      if (c.exitCode === null && c.signalCode === null) terminate(c, 1000);
    });
    out?.destroy();
    socket?.theirs.destroy();
    tapped?.close();
    await handle.close();
  }
}

/** Size and sha256 of what the stages wrote, read back (from the page cache). */
export async function hashFile(handle: FileHandle): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  const bytes = await eachChunk(handle, (chunk) => hash.update(chunk));
  return { bytes, sha256: hash.digest('hex') };
}

/**
 * Every byte of an open file from its start to its end, in reads of up to 1 MB into one buffer:
 * a chunk is valid only during the onChunk call. The buffer is sized to the file: a 1 MB buffer
 * for each of 1,000 dumps of a few KB kept the GC busy. Returns the bytes read.
 */
export async function eachChunk(handle: FileHandle, onChunk: (chunk: Buffer) => void): Promise<number> {
  const { size } = await handle.stat();
  const buffer = Buffer.allocUnsafe(Math.max(4096, Math.min(1024 * 1024, size + 1)));
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
    if (bytesRead === 0) return bytes;
    onChunk(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
  }
}
