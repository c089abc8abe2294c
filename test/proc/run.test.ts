import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/errors.js';
import { startChild } from '../../lib/proc/child.js';
import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { pipeToFile } from '../../lib/proc/pipeline.js';
import { run } from '../../lib/proc/run.js';
import { isRunning } from '../helpers/processes.js';

// lib/proc on tiny fixture programs (sh one-liners run as real subprocesses, as execa's own tests
// do): which stage a pipeline blames, timeouts, cancellation, process-group kills, exit classes.

const top = mkdtempSync(join(tmpdir(), 'run-test-'));
afterAll(() => rmSync(top, { recursive: true, force: true }));
let n = 0;
const out = (): string => join(top, `out-${n++}`);
const sh = (script: string) => cmd('sh', ['-c', script]);

async function failure(p: Promise<unknown>): Promise<CommandError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(CommandError);
  return err as CommandError;
}

describe('pipeToFile names the root cause', () => {
  it('a producer that fails behind a compressor that exits 0 fails the pipeline, blamed on the producer', async () => {
    const err = await failure(pipeToFile([sh('echo partial; echo "dump: Got error 2013: Lost connection" >&2; exit 3'), cmd('gzip', ['-c'])], out()));
    expect(err.message).toBe('sh: exited with 3: dump: Got error 2013: Lost connection');
    expect(err.exitCodeOfCommand).toBe(3);
    expect(err.command).toMatch(/^sh -c .* \| gzip -c$/);
  });

  it('a reader that dies is the cause, not the writer it left with a broken pipe', async () => {
    const err = await failure(pipeToFile([cmd('yes'), sh('head -c 10 >/dev/null; echo "reader: bad input" >&2; exit 4')], out()));
    expect(err.message).toBe('sh: exited with 4: reader: bad input');
  });

  it('every stage ok: bytes and sha256 of what reached the file', async () => {
    const file = out();
    const r = await pipeToFile([sh('printf hello'), cmd('cat')], file);
    expect(readFileSync(file, 'utf8')).toBe('hello');
    expect(r).toMatchObject({ bytes: 5, sha256: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824' });
    expect(r.stages.map((s) => s.exitCode)).toEqual([0, 0]);
  });

  it('the last stage writes the file itself: a full disk is its own error, named, not its writer\'s broken pipe', async () => {
    const dir = join(top, 'full');
    mkdirSync(dir);
    await run(cmd('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir]));
    try {
      const err = await failure(pipeToFile([cmd('yes'), cmd('head', ['-c', '1000000'])], join(dir, 'out')));
      expect(err.message).toMatch(/^head: exited with 1: .*No space left on device/);
    } finally {
      await run(cmd('umount', [dir]));
    }
  });

  it('a tapped last stage is seen on its way into the file, byte for byte', async () => {
    const file = out();
    const seen: Buffer[] = [];
    // A copy: a chunk is valid only during the call (the relay's buffer is read into again).
    const r = await pipeToFile([cmd('seq', ['100000'])], file, { tap: { after: 0, onData: (c) => seen.push(Buffer.from(c)) } });
    const text = readFileSync(file, 'utf8');
    expect(text.split('\n').slice(-2)).toEqual(['100000', '']);
    expect(Buffer.concat(seen).toString()).toBe(text);
    expect(r.bytes).toBe(Buffer.byteLength(text));
  });

  it('a timeout kills every stage and says so', async () => {
    const started = Date.now();
    const err = await failure(pipeToFile([cmd('sleep', ['30']), cmd('cat')], out(), { timeoutMs: 300 }));
    expect(err.message).toMatch(/timed out after 0\.30s/);
    expect(err.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('run', () => {
  it('a timeout kills the whole process group, grandchildren included', async () => {
    const pidFile = join(top, 'grandchild.pid');
    const err = await failure(run(sh(`sleep 30 & echo $! > ${pidFile}; wait`), { timeoutMs: 300 }));
    expect(err).toMatchObject({ timedOut: true, exitCodeOfCommand: undefined });
    expect(err.message).toMatch(/timed out after 0\.30s/);
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    for (let i = 0; i < 100 && isRunning(grandchild); i++) await new Promise((r) => setTimeout(r, 20));
    expect(isRunning(grandchild)).toBe(false);
  });

  it('an abort from outside ends it with the signal named', async () => {
    const stop = new AbortController();
    const running = run(sh('exec sleep 30'), { signal: stop.signal });
    stop.abort();
    const err = await failure(running);
    expect(err.message).toMatch(/killed by SIGTERM/);
  });

  it('exit codes read per tool: ok, warning, error', async () => {
    const borgLike = exitClasses({ warning: [1] });
    expect(await run(sh('exit 0'), { exitClass: borgLike })).toMatchObject({ exitCode: 0, exitClass: 'ok' });
    expect(await run(sh('echo changed >&2; exit 1'), { exitClass: borgLike })).toMatchObject({ exitCode: 1, exitClass: 'warning', stderr: 'changed\n' });
    const err = await failure(run(sh('echo "fatal: no repo" >&2; exit 2'), { exitClass: borgLike }));
    expect(err).toMatchObject({ exitCodeOfCommand: 2, stderrTail: 'fatal: no repo', message: "sh -c 'echo \"fatal: no repo\" >&2; exit 2': exited with 2: fatal: no repo" });
    // The default: only 0 is ok.
    expect((await failure(run(sh('exit 1')))).exitCodeOfCommand).toBe(1);
  });

  it('a program that cannot start is a CommandError that says so, secrets redacted', async () => {
    const missing = join(top, 'no-such-tool');
    const err = await failure(run(cmd(missing, ['--password=hunter22']), { secrets: ['hunter22'] }));
    expect(err.message).toMatch(/could not start/);
    expect(err.message).not.toContain('hunter22');
    expect(existsSync(missing)).toBe(false);
  });
});

describe('startChild (streams driven by the caller: the parallel loader, sandbox servers)', () => {
  it('an abort from outside kills its whole process group; the failure says how it ended and the stderr line', async () => {
    const pidFile = join(top, 'child-grandchild.pid');
    const stop = new AbortController();
    const child = startChild(sh(`echo "error: about to wait" >&2; sleep 30 & echo $! > ${pidFile}; wait`), { signal: stop.signal });
    // The redirect creates the file before echo writes the pid: wait for the whole line.
    for (let i = 0; i < 200 && !(existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n')); i++) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    const end = await child.ended;
    expect(end).toMatchObject({ exitCode: null, signal: 'SIGTERM', stderrTail: 'error: about to wait', timedOut: false });
    const err = child.failure(end, 'loading x.sql');
    expect(err).toBeInstanceOf(CommandError);
    expect(err).toMatchObject({ message: 'loading x.sql: killed by SIGTERM: error: about to wait', signal: 'SIGTERM', exitCodeOfCommand: undefined, stderrTail: 'error: about to wait' });
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    for (let i = 0; i < 100 && isRunning(grandchild); i++) await new Promise((r) => setTimeout(r, 20));
    expect(isRunning(grandchild)).toBe(false);
  });

  it('a time limit, stdin and stdout driven by the caller, and a start that fails', async () => {
    const cat = startChild(cmd('cat'), { stdin: 'pipe' });
    cat.stdin!.end('through cat\n');
    let seen = '';
    for await (const chunk of cat.stdout!) seen += String(chunk);
    expect(seen).toBe('through cat\n');
    expect(await cat.ended).toMatchObject({ command: 'cat', exitCode: 0, signal: null, stderrTail: '', timedOut: false });

    const slow = startChild(sh('exec sleep 30'), { timeoutMs: 200 });
    const end = await slow.ended;
    expect(end).toMatchObject({ exitCode: null, signal: 'SIGTERM', timedOut: true });
    expect(end.durationMs).toBeGreaterThanOrEqual(200);
    expect(slow.failure(end)).toMatchObject({ timedOut: true, message: "sh -c 'exec sleep 30': timed out after 0.20s" });

    const missing = startChild(cmd(join(top, 'no-such-loader'), ['--password=hunter22']), { secrets: ['hunter22'] });
    const gone = await missing.ended;
    expect(gone.startError).toMatch(/ENOENT/);
    expect(missing.failure(gone).message).toMatch(/could not start: .*ENOENT/);
    expect(missing.failure(gone).message).not.toContain('hunter22');
  });
});

describe('run: onStderr', () => {
  it('sees stderr as it comes, a character cut between two writes decoded whole; the result still holds all of it', async () => {
    const seen: string[] = [];
    // ü is c3 bc: its two bytes in two writes, 0.2 s apart (two chunks).
    const r = await run(sh("printf 'a\\n\\303' >&2; sleep 0.2; printf '\\274\\nb\\n' >&2; echo out"), { onStderr: (c) => seen.push(c) });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.join('')).toBe('a\nü\nb\n');
    expect(seen.join('')).not.toContain('\ufffd');
    expect(r.stderr).toBe('a\nü\nb\n');
    expect(r.stdout).toBe('out\n');
  });
});
