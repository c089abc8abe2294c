import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { CommandError } from '../errors.js';
import { startChild, type ChildOptions, type StartedChild } from './child.js';
import { errorLine, type Command } from './command.js';
import { hashFile } from './file-hash.js';
import { Watch, type Ended, type PipelineOptions, type PipelineResult } from './lifecycle.js';
import { openSocketReader, relay, streamReader, type ChunkReader } from './reused-reader.js';
import { canRun, type Spawner } from './spawner.js';
import { stagedToFile } from './staged.js';

export { eachChunk, hashFile } from './file-hash.js';
export type { PipelineOptions, PipelineResult } from './lifecycle.js';

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
// strerror text ("yes: standard output: Connection reset by peer", found by test/proc/run.test.ts).
function brokenPipe(r: Ended): boolean {
  return r.signal === 'SIGPIPE' || r.exitCode === 141 || /errno (32|104) on write|errno 32\b|broken pipe|EPIPE|connection reset by peer/i.test(r.stderrTail);
}

export async function pipeToFile(stages: readonly Command[], file: string, options: PipelineOptions & { readonly spawner?: Spawner } = {}): Promise<PipelineResult> {
  if (stages.length === 0) throw new Error('pipeToFile needs at least one stage');
  // Small outputs (the caller knows: last night's size): each stage started by a bash worker,
  // through files, instead of a fork of our ~100 MB process per stage (staged.ts).
  if (options.spawner && stages.every(canRun)) return stagedToFile(options.spawner, stages, file, options);
  const started = Date.now();
  const children: StartedChild[] = [];
  const tap = options.tap;
  if (tap && (tap.after < 0 || tap.after >= stages.length)) throw new Error(`pipeToFile: no stage ${tap.after} to tap`);
  const relays: Promise<Error | undefined>[] = [];
  const watch = new Watch(options, () => children.forEach((c) => void c.terminate()));

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
    let upstream: NonNullable<StartedChild['stdout']> | 'ignore' = 'ignore';
    for (const [i, stage] of stages.entries()) {
      // After the tapped stage, Node writes this stage's stdin itself (a relay, below).
      const relayed = tap !== undefined && i === tap.after + 1;
      const stdout = i === last && !lastTapped ? handle.fd : tap?.after === i && socket ? socket.theirs : 'pipe';
      const child = startChild(stage, { stdin: relayed ? 'pipe' : upstream, stdout, secrets: options.secrets });
      children.push(child);
      // The child has its own copy: ours closed, the reader sees the end when the child's is.
      if (tap?.after === i) socket?.theirs.destroy();
      if (tap?.after === i) tapped ??= streamReader(child.stdout!);
      if (relayed && child.stdin) {
        relays.push(relay(tapped!, tap.onData, child.stdin, tap.pace).then(() => undefined, (err: Error) => err));
      }
      upstream = child.stdout!;
    }
    // The parent's copy of each intermediate pipe must not keep the reader alive (a relayed
    // one is read by Node until its end).
    for (const [i, c] of children.slice(0, -1).entries()) if (tap?.after !== i) c.stdout?.destroy();

    const writing = out ? relay(tapped!, tap!.onData, out, tap!.pace).then(() => undefined, (err: Error) => err) : undefined;
    const ends = await Promise.all(children.map((c) => c.ended));
    const writeError = await writing;
    // A relay that broke while every stage exited 0 (the tap threw) left the next stage with a
    // short input it compressed happily: that is a failure too.
    const relayError = (await Promise.all(relays)).find((e) => e !== undefined);
    // fsync is per file, not per descriptor: the data is on disk before anyone renames it.
    if (!writeError && options.fsync !== false) await handle.sync();

    // The time limit is the pipeline's: every stage it cut short says so.
    const stageResults: Ended[] = ends.map((r) => ({ ...r, timedOut: watch.timedOut }));
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
    return { bytes, sha256, durationMs: Date.now() - started, stages: stageResults, via: 'pipes' };
  } finally {
    watch.end();
    children.forEach((c) => void c.terminate(1000));
    out?.destroy();
    socket?.theirs.destroy();
    tapped?.close();
    await handle.close();
  }
}

export interface ReadingChild {
  readonly child: StartedChild;
  readonly reader: ChunkReader;
}

/**
 * The pipeline into a consumer: start `command` with its stdout read through a ChunkReader
 * (reused-reader.ts: one reused buffer, for the restore's passes over a dump of gigabytes). The
 * socket goes in the temp dir, or /dev/shm or /tmp when the temp dir's path is too long for a
 * socket's; when none can hold it, or it cannot be set up, the child still starts, with an
 * ordinary pipe behind the same interface: slower, never a failure of its own.
 */
export async function pipeToReader(command: Command, options: Omit<ChildOptions, 'stdout' | 'daemon'> = {}, bufferBytes = 256 << 10): Promise<ReadingChild> {
  const socket = await openSocketReader(bufferBytes);
  if (!socket) {
    const child = startChild(command, { ...options, stdout: 'pipe' });
    return { child, reader: streamReader(child.stdout!) };
  }
  // The child gets its own copy of the descriptor; ours is closed, so the reader sees the end of
  // the output when the child (and whatever it started) has closed it.
  const child = startChild(command, { ...options, stdout: socket.theirs });
  socket.theirs.destroy();
  return { child, reader: socket.reader };
}
