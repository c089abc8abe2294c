import { open, unlink } from 'node:fs/promises';
import { basename } from 'node:path';
import { CommandError, tail } from '../errors.js';
import { readFileTail } from '../file-tail.js';
import { describe, errorLine, redact, type Command } from './command.js';
import { eachChunk, hashFile } from './file-hash.js';
import { Watch, type Ended, type PipelineOptions, type PipelineResult } from './lifecycle.js';
import type { SpawnedProcess, Spawner } from './spawner.js';

const STDERR_KEEP = 8192;
const KILL_GRACE_MS = 5000;

/**
 * Inside pipeToFile (pipeline.ts), when it is given a Spawner and every stage can run from one:
 * `a > f0; b < f0 > file`: the stages one after the other through files, started by a
 * Spawner (no fork of Node per stage). For small outputs only: each stage's output is written
 * out in full before the next reads it. Same contract as pipeToFile: `file` is created new
 * (0600) and owned by the caller, every stage's exit is checked, a tap sees the tapped stage's
 * whole output (read back from its file, in the page cache), the result is fsynced unless
 * `fsync: false`, and the size and sha256 are of the bytes on disk.
 */
export async function stagedToFile(spawner: Spawner, stages: readonly Command[], file: string, options: PipelineOptions = {}): Promise<PipelineResult> {
  if (stages.length === 0) throw new Error('stagedToFile needs at least one stage');
  const started = Date.now();
  const { tap, secrets } = options;
  if (tap && (tap.after < 0 || tap.after >= stages.length)) throw new Error(`stagedToFile: no stage ${tap.after} to tap`);
  const last = stages.length - 1;
  const scratch: string[] = [];
  const results: Ended[] = [];
  let current: SpawnedProcess | undefined;
  const watch = new Watch(options, () => current?.terminate(KILL_GRACE_MS));
  try {
    let input = '/dev/null';
    for (const [i, stage] of stages.entries()) {
      if (watch.timedOut || watch.cancelled) throw failure(stages, results, watch, file, undefined);
      // Next to `file` (its temporary name), so nothing here ever looks like a finished dump.
      const out = i === last ? file : `${file}.stage${i}`;
      // In memory: creating and removing two more files per dump on the dump's filesystem showed in the profile.
      const err = spawner.scratchPath(`stderr${i}`);
      if (i < last) scratch.push(out);
      scratch.push(err);
      current = spawner.start({ command: stage, stdin: input, stdout: out, stderr: err });
      const end = await current.ended;
      current = undefined;
      const result: Ended = {
        ...end,
        command: describe(stage, secrets),
        stderrTail: redact(tail(end.startError ?? (await readTail(err))), secrets),
        timedOut: watch.timedOut,
      };
      results.push(result);
      const tolerated = result.exitCode !== 0 && result.signal === null && options.tolerate?.(result, i) === true;
      if ((result.exitCode !== 0 && !tolerated) || watch.timedOut || watch.cancelled) throw failure(stages, results, watch, file, result);
      if (tap?.after === i) {
        const fed = await feed(out, tap.onData).then(() => undefined, (e: Error) => e);
        if (fed) throw new CommandError({ message: `${stages.map((s) => basename(s.file)).join(' | ')}: checking its output failed: ${fed.message}`, command: results.map((r) => r.command).join(' | ') });
      }
      input = out;
    }
    const handle = await open(file, 'r');
    try {
      if (options.fsync !== false) await handle.sync();
      const { bytes, sha256 } = await hashFile(handle);
      return { bytes, sha256, durationMs: Date.now() - started, stages: results, via: 'files' };
    } finally {
      await handle.close();
    }
  } finally {
    watch.end();
    await Promise.all(scratch.map(removeScratch));
  }
}

function failure(stages: readonly Command[], results: readonly Ended[], watch: Watch, file: string, primary: Ended | undefined): CommandError {
  const why = watch.why({ signal: primary?.signal, exitCode: primary?.exitCode, startError: primary?.exitCode === null && !primary.signal ? primary.stderrTail : undefined }, true);
  const shown = primary ? basename(stages[results.indexOf(primary)]!.file) : stages.map((s) => basename(s.file)).join(' | ');
  const detail = primary && primary.exitCode !== null ? errorLine(primary.stderrTail) : undefined;
  return new CommandError({
    message: `${shown}: ${why}${detail ? `: ${detail}` : ''}`,
    command: results.length ? results.map((r) => r.command).join(' | ') : `writing ${file}`,
    exitCode: primary?.exitCode ?? undefined,
    signal: primary?.signal ?? undefined,
    stderrTail: primary?.stderrTail ?? '',
    timedOut: watch.timedOut,
  });
}

/**
 * A stage's scratch file (its output or stderr; one that never got created is fine). unlink, not
 * rm(): rm() asks lstat first (a directory?), a second round trip through the thread pool for
 * each of the three scratch files of every small dump.
 */
async function removeScratch(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** The last STDERR_KEEP bytes of a stage's stderr file ('' if it never got one). */
async function readTail(path: string): Promise<string> {
  return readFileTail(path, STDERR_KEEP).catch(() => '');
}

/** The whole file through `onData`, as a tap would have seen it stream. */
async function feed(path: string, onData: (chunk: Buffer) => void): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await eachChunk(handle, onData);
  } finally {
    await handle.close();
  }
}
