import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/errors.js';
import { startChild } from '../../lib/proc/child.js';
import { cmd } from '../../lib/proc/command.js';
import type { Ended } from '../../lib/proc/lifecycle.js';
import { pipeToFile } from '../../lib/proc/pipeline.js';
import { run } from '../../lib/proc/run.js';
import { openClientSession } from '../../lib/proc/session.js';
import { Spawner } from '../../lib/proc/spawner.js';
import { isRunning } from '../helpers/processes.js';

// The three primitives of lib/proc (run, pipeToFile, startChild) and what they share: one result
// type (Ended) and one terminate().
const top = mkdtempSync(join(tmpdir(), 'asb-primitives-'));
const spawner = new Spawner();
let n = 0;
const fresh = (name: string): string => join(top, `${name}.${++n}`);
const sh = (script: string): ReturnType<typeof cmd> => cmd('sh', ['-c', script]);
afterAll(() => {
  spawner.close();
  rmSync(top, { recursive: true, force: true });
});

async function until(check: () => boolean, ms = 5000): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 20))) if (check()) return true;
  return check();
}

/** Ended without its timing (which differs from run to run). */
const shape = ({ durationMs, ...rest }: Ended): Omit<Ended, 'durationMs'> => (expect(durationMs).toBeGreaterThanOrEqual(0), rest);

describe('one result type: every primitive says how a process ended with Ended', () => {
  it('run(), startChild(), and pipeToFile() through pipes and through a spawner agree, field for field', async () => {
    const script = sh('echo out; echo "warning: said on stderr" >&2; exit 0');
    const ran = await run(script);
    const started = await startChild(script).ended;
    const piped = (await pipeToFile([script], fresh('out'), {})).stages[0]!;
    const staged = await pipeToFile([script], fresh('out'), { spawner });
    expect(staged.via).toBe('files');
    const expected = { command: "sh -c 'echo out; echo \"warning: said on stderr\" >&2; exit 0'", exitCode: 0, signal: null, stderrTail: 'warning: said on stderr', timedOut: false };
    expect(ran).toMatchObject({ ...expected, stdout: 'out\n', exitClass: 'ok' });
    expect(shape(started)).toEqual(expected);
    expect(shape(piped)).toEqual(expected);
    expect(shape(staged.stages[0]!)).toEqual(expected);
  });

  it('a stage that fails: the same Ended whichever way the pipeline ran, and the CommandError blames that stage', async () => {
    const stages = [sh('echo rows; echo more rows'), sh('cat >/dev/null; echo "gzip: stdin: unexpected end of file" >&2; exit 3'), cmd('cat')];
    for (const options of [{}, { spawner }]) {
      const err = await pipeToFile(stages, fresh('dump'), options).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect(err).toMatchObject({ message: 'sh: exited with 3: gzip: stdin: unexpected end of file', exitCodeOfCommand: 3, stderrTail: 'gzip: stdin: unexpected end of file' });
    }
  });
});

describe('terminate(): TERM to the whole group, KILL after the grace period', () => {
  it('a group that ignores SIGTERM is killed after the grace period, grandchildren included; ended says SIGKILL', async () => {
    const pidFile = fresh('pid');
    const child = startChild(sh(`trap "" TERM; sleep 30 & echo $! > ${pidFile}; wait`));
    expect(await until(() => readFileSync(pidFile, { flag: 'a+' }).toString().endsWith('\n'))).toBe(true);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    const asked = Date.now();
    await child.terminate(300);
    expect(Date.now() - asked).toBeGreaterThanOrEqual(290);
    expect(shape(await child.ended)).toMatchObject({ exitCode: null, signal: 'SIGKILL', timedOut: false });
    expect(await until(() => !isRunning(grandchild))).toBe(true);
    // Once ended, terminate is a no-op that settles at once.
    const again = Date.now();
    await child.terminate(10_000);
    expect(Date.now() - again).toBeLessThan(1000);
  });

  it('a group that obeys SIGTERM ends at once, long before the grace period', async () => {
    const child = startChild(cmd('sleep', ['30']));
    const asked = Date.now();
    await child.terminate(20_000);
    expect(Date.now() - asked).toBeLessThan(5000);
    expect(await child.ended).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
  });
});

describe('time limits and cancellation', () => {
  it('a pipeline that runs out of time: every stage stopped, the error says how long and that it timed out', async () => {
    const started = Date.now();
    const err = await pipeToFile([cmd('sleep', ['30']), cmd('cat')], fresh('dump'), { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/^sleep: timed out after 0\.30s/);
    expect(err).toMatchObject({ timedOut: true });
  });

  it('a pipeline cancelled from outside says "cancelled", with a spawner too', async () => {
    for (const options of [{}, { spawner }]) {
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 200);
      const err = await pipeToFile([cmd('sleep', ['30']), cmd('cat')], fresh('dump'), { ...options, signal: abort.signal }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CommandError);
      expect((err as CommandError).message).toMatch(/cancelled/);
    }
  });

  it('run() cancelled from outside: a CommandError naming the signal, not a result', async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const err = await run(cmd('sleep', ['30']), { signal: abort.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toMatchObject({ message: 'sleep 30: killed by SIGTERM' });
  });
});

describe('a long-lived process that ends early', () => {
  it('writes to it no longer wait, and its end says why', async () => {
    const child = startChild(sh('read first; echo "mariadb: ERROR 2013: Lost connection" >&2; exit 4'), { stdin: 'pipe', stdout: 'ignore' });
    await child.write(Buffer.from('one line\n'));
    const end = await child.ended;
    // Far more than a pipe holds: a write that waited for the drain of a dead reader would hang.
    await child.write(Buffer.alloc(4 << 20, 0x41));
    expect(await child.endInput()).toBe(end);
    expect(end).toMatchObject({ exitCode: 4, signal: null, stderrTail: 'mariadb: ERROR 2013: Lost connection' });
    expect(child.failure(end, 'loading x.sql').message).toBe('loading x.sql: exited with 4: mariadb: ERROR 2013: Lost connection');
  });

  it('a client session whose client exits: the pending request fails with its stderr, the next one too', async () => {
    const session = openClientSession(sh('read q; echo "psql: FATAL: terminating connection due to administrator command" >&2; exit 2'), (token) => `\\echo ${token}`);
    const err = await session.request('SELECT 1;').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toMatch(/exited with 2: psql: FATAL: terminating connection/);
    await expect(session.request('SELECT 2;')).rejects.toBeInstanceOf(CommandError);
    await session.close();
  });
});
