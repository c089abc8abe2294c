import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { CommandError, tail } from '../errors.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { spawnOptions, Watch } from './lifecycle.js';
import { terminate, track } from './process-group.js';

export interface PipelineOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  secrets?: readonly string[];
  /**
   * Accept a stage that exited non-zero (getfacl exits 1 when a file vanished mid-walk but wrote
   * everything else). Its StageResult is still returned, so the caller can report it.
   */
  tolerate?: (stage: StageResult, index: number) => boolean;
}

export interface StageResult {
  readonly command: string;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderrTail: string;
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
 * to run out of memory on multi-GB dumps). Only the last stage's output, usually compressed,
 * flows through Node, where it is hashed, counted and written to `file` (created 0600, fsynced).
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
  const exits: Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>[] = [];
  const watch = new Watch(options, () => children.forEach((c) => terminate(c)));

  // Created exclusively: a leftover temp file of a crashed run is never appended to.
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  await new Promise<void>((resolve, reject) => out.once('open', () => resolve()).once('error', reject));
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    let upstream: NodeJS.ReadableStream | 'ignore' = 'ignore';
    for (const [i, stage] of stages.entries()) {
      const child = spawn(stage.file, [...stage.args], { ...spawnOptions(stage), stdio: [upstream as never, 'pipe', 'pipe'] });
      track(child);
      children.push(child);
      stderrs[i] = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (d: string) => {
        stderrs[i] = (stderrs[i] + d).slice(-STDERR_KEEP);
      });
      exits.push(
        new Promise((resolve) => {
          child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }));
          child.once('close', (code, signal) => resolve({ code, signal }));
        }),
      );
      upstream = child.stdout as NodeJS.ReadableStream;
    }
    // The parent's copy of each intermediate pipe must not keep the reader alive.
    for (const c of children.slice(0, -1)) c.stdout?.destroy();

    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const last = children[children.length - 1]!;
    const writing = streamPipeline(last.stdout!, counter, out).then(
      () => undefined,
      (err: Error) => err,
    );
    const results = await Promise.all(exits);
    const writeError = await writing;
    // fsync is per file, not per descriptor: the data is on disk before anyone renames it.
    if (!writeError) {
      const h = await open(file, 'r');
      await h.sync().finally(() => h.close());
    }

    const stageResults: StageResult[] = results.map((r, i) => ({
      command: describe(stages[i]!, options.secrets),
      exitCode: r.code,
      signal: r.signal,
      stderrTail: redact(tail(r.spawnError ? String(r.spawnError.message) : stderrs[i] ?? ''), options.secrets),
    }));
    const failed = stageResults.filter((r, i) => r.exitCode !== 0 && !(r.signal === null && options.tolerate?.(r, i)));
    if (failed.length > 0 || writeError || watch.timedOut || watch.cancelled) {
      // A stage that failed on a broken pipe only says its reader died: name the root cause
      // first. Dump tools ignore SIGPIPE and exit with an error instead (mariadb-dump: exit 5,
      // "Got errno 32 on write"), so the stderr counts too. When every failure is a broken pipe
      // and the write to `file` failed (ENOSPC, EROFS), that write is the cause.
      const primary = failed.find((r) => !brokenPipe(r)) ?? (writeError ? undefined : failed[0]);
      const why = primary || watch.timedOut || watch.cancelled ? watch.why({ signal: primary?.signal, exitCode: primary?.exitCode }, true) : `writing ${file} failed: ${writeError?.message}`;
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
    return { bytes, sha256: hash.digest('hex'), durationMs: Date.now() - started, stages: stageResults };
  } finally {
    watch.end();
    children.forEach((c) => {
      if (c.exitCode === null && c.signalCode === null) terminate(c, 1000);
    });
    out.destroy();
  }
}
