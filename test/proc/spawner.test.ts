import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandError } from '../../lib/errors.js';
import { cmd } from '../../lib/proc/command.js';
import { liveChildren, liveGroups, terminateAll } from '../../lib/proc/process-group.js';
import { canRun, Spawner, WORKER } from '../../lib/proc/spawner.js';
import { spawn } from 'node:child_process';
import { pipeToFile } from '../../lib/proc/pipeline.js';

const work = mkdtempSync(join(tmpdir(), 'asb-spawner-test-'));
const spawner = new Spawner();
let n = 0;
const fresh = (name: string): string => join(work, `${name}.${++n}`);
afterAll(() => {
  spawner.close();
  rmSync(work, { recursive: true, force: true });
});

/** The file holds a whole line (the job may not have created it yet). */
function lineIn(path: string): boolean {
  try {
    return readFileSync(path, 'utf8').endsWith('\n');
  } catch {
    return false;
  }
}

async function until(check: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describe('Spawner: commands started by a bash worker instead of a fork of Node', () => {
  it('runs argv as given (quotes, $(…), a newline), with its env and cwd, into a new 0600 file', async () => {
    const out = fresh('out');
    const err = fresh('err');
    const weird = `it's "q" $(touch ${work}/pwned) \`x\`\nline2 \\ *`;
    const job = spawner.start({ command: cmd('sh', ['-c', 'printf "%s|%s|%s" "$1" "$FOO" "$(pwd)"; echo warn >&2; exit 3', 'sh', weird], { env: { FOO: 'a b', UNSET_ME: undefined }, cwd: '/tmp' }), stdin: '/dev/null', stdout: out, stderr: err });
    expect(await job.ended).toMatchObject({ exitCode: 3, signal: null });
    expect(readFileSync(out, 'utf8')).toBe(`${weird}|a b|/tmp`);
    expect(readFileSync(err, 'utf8')).toBe('warn\n');
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readdirSync(work)).not.toContain('pwned');
  });

  it('reads stdin from a file, and each job leads its own process group', async () => {
    const input = fresh('in');
    writeFileSync(input, 'hello\n');
    const out = fresh('out');
    // Fields 1 and 5 of /proc/self/stat: pid and process group (no spaces in "(cat)").
    const job = spawner.start({ command: cmd('sh', ['-c', 'cat; read -r pid _ _ _ pgid _ < /proc/self/stat; echo "$pid $pgid"']), stdin: input, stdout: out, stderr: fresh('err') });
    expect((await job.ended).exitCode).toBe(0);
    const [text, ids] = readFileSync(out, 'utf8').split('\n');
    expect(text).toBe('hello');
    const [pid, pgid] = ids!.split(' ').map(Number);
    expect(pgid).toBe(pid);
  });

  it('never writes over an existing file: the job fails and the file keeps its bytes', async () => {
    const out = fresh('out');
    writeFileSync(out, 'a good dump');
    const err = fresh('err');
    const job = spawner.start({ command: cmd('echo', ['overwritten']), stdin: '/dev/null', stdout: out, stderr: err });
    expect((await job.ended).exitCode).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe('a good dump');
    expect(readFileSync(err, 'utf8')).toMatch(/cannot overwrite existing file/);
  });

  it('a program that does not exist: exit 127 and the shell says so', async () => {
    const err = fresh('err');
    const job = spawner.start({ command: cmd('/nonexistent/mariadb-dump'), stdin: '/dev/null', stdout: '/dev/null', stderr: err });
    expect((await job.ended).exitCode).toBe(127);
    expect(readFileSync(err, 'utf8')).toMatch(/No such file or directory|not found/);
  });

  it('terminate reaches the whole process group, also when asked before the job had started', async () => {
    const early = spawner.start({ command: cmd('sleep', ['30']), stdin: '/dev/null', stdout: '/dev/null', stderr: fresh('err') });
    early.terminate();
    expect(await early.ended).toMatchObject({ exitCode: null, signal: 'SIGTERM' });

    const out = fresh('out');
    const job = spawner.start({ command: cmd('sh', ['-c', 'sleep 30 & echo $!; wait']), stdin: '/dev/null', stdout: out, stderr: fresh('err') });
    expect(await until(() => lineIn(out))).toBe(true);
    const sleeper = Number(readFileSync(out, 'utf8').trim());
    job.terminate();
    expect(await job.ended).toMatchObject({ exitCode: null, signal: 'SIGTERM' });
    // The shell's child went with it: the signal was for the group, not one process.
    expect(await until(() => !existsPid(sleeper))).toBe(true);
  });

  it('terminate escalates to SIGKILL after the grace period for a group that ignores SIGTERM', async () => {
    const out = fresh('out');
    const job = spawner.start({ command: cmd('sh', ['-c', 'trap "" TERM; sleep 30 & echo $!; wait']), stdin: '/dev/null', stdout: out, stderr: fresh('err') });
    expect(await until(() => lineIn(out))).toBe(true);
    const sleeper = Number(readFileSync(out, 'utf8').trim());
    const asked = Date.now();
    job.terminate(300);
    expect(await job.ended).toMatchObject({ exitCode: null, signal: 'SIGKILL' });
    expect(Date.now() - asked).toBeGreaterThanOrEqual(300);
    expect(await until(() => !existsPid(sleeper))).toBe(true);
  });

  it('a worker that dies under its job: the job is stopped and reads as not run, never as a success', async () => {
    const out = fresh('out');
    // The job's parent is its worker.
    const job = spawner.start({ command: cmd('sh', ['-c', 'echo $$; kill -KILL $PPID; sleep 30']), stdin: '/dev/null', stdout: out, stderr: fresh('err') });
    const end = await job.ended;
    expect(end.exitCode).toBeNull();
    expect(end.startError).toMatch(/spawner .* ended/);
    const pid = Number(readFileSync(out, 'utf8').trim());
    expect(await until(() => !existsPid(pid))).toBe(true);
    // The pool starts another worker for the next job.
    const next = spawner.start({ command: cmd('true'), stdin: '/dev/null', stdout: '/dev/null', stderr: fresh('err') });
    expect((await next.ended).exitCode).toBe(0);
  });

  it('a job file that cannot be written (its directory gone, a full /dev/shm) is a failed start, not a crash', async () => {
    const other = new Spawner();
    const first = other.start({ command: cmd('true'), stdin: '/dev/null', stdout: '/dev/null', stderr: fresh('err') });
    expect((await first.ended).exitCode).toBe(0);
    rmSync(dirname(other.scratchPath('x')), { recursive: true, force: true });
    const job = other.start({ command: cmd('true'), stdin: '/dev/null', stdout: '/dev/null', stderr: fresh('err') });
    const end = await job.ended;
    expect(end.exitCode).toBeNull();
    expect(end.startError).toMatch(/could not write the job file .*ENOENT/);
    other.close();
  });

  it('refuses what only spawn() can do: another user, a bare environment', () => {
    expect(canRun(cmd('pg_dump', [], { uid: 26, gid: 26 }))).toBe(false);
    expect(canRun(cmd('mariadb', [], { inheritEnv: false }))).toBe(false);
    expect(canRun(cmd('zstd', ['-q']))).toBe(true);
    const other = new Spawner();
    expect(() => other.start({ command: cmd('id', [], { uid: 0, gid: 0 }), stdin: '/dev/null', stdout: '/dev/null', stderr: fresh('err') })).toThrow(/spawn\(\)/);
    other.close();
  });
});

function existsPid(pid: number): boolean {
  try {
    // A zombie still answers kill 0; its state says it is gone.
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('pipeToFile with a spawner: a | b > file through files, for small dumps', () => {
  it('gives the bytes, size and sha256 pipeToFile would, lets the tap see the whole first stage, leaves nothing behind', async () => {
    const file = fresh('dump.gz');
    const seen: Buffer[] = [];
    const text = Array.from({ length: 20000 }, (_, i) => `INSERT INTO t VALUES (${i});`).join('\n') + '\n-- Dump completed\n';
    const source = fresh('source');
    writeFileSync(source, text);
    const result = await pipeToFile([cmd('cat', ['--', source]), cmd('gzip', ['-c'])], file, { spawner, tap: { after: 0, onData: (c) => seen.push(Buffer.from(c)) } });
    const bytes = readFileSync(file);
    expect(gunzipSync(bytes).toString()).toBe(text);
    expect(result.bytes).toBe(bytes.length);
    expect(result.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(Buffer.concat(seen).toString()).toBe(text);
    expect(result.stages.map((s) => s.exitCode)).toEqual([0, 0]);
    expect(result.via).toBe('files');
    expect(readdirSync(work).filter((f) => f.startsWith(`dump.gz.${n}.`))).toEqual([]);
    // The same stages without a spawner stream through kernel pipes, to the same bytes.
    const piped = await pipeToFile([cmd('cat', ['--', source]), cmd('gzip', ['-c', '-n'])], fresh('dump.gz'), {});
    const staged = await pipeToFile([cmd('cat', ['--', source]), cmd('gzip', ['-c', '-n'])], fresh('dump.gz'), { spawner });
    expect([piped.via, staged.via]).toEqual(['pipes', 'files']);
    expect(staged.sha256).toBe(piped.sha256);
    expect(staged.bytes).toBe(piped.bytes);
  });

  it('a failing first stage: a CommandError naming it and its stderr; the second never runs', async () => {
    const file = fresh('dump');
    const err = await pipeToFile([cmd('sh', ['-c', 'echo partial; echo "mariadb-dump: Got error: 1356: View references invalid table" >&2; exit 2']), cmd('sh', ['-c', `touch ${work}/second-ran; cat`])], file, { spawner }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toBe('sh: exited with 2: mariadb-dump: Got error: 1356: View references invalid table');
    expect((err as CommandError).exitCodeOfCommand).toBe(2);
    expect(readdirSync(work)).not.toContain('second-ran');
  });

  it('a time limit and a cancel stop the running stage', async () => {
    const t0 = Date.now();
    const timedOut = await pipeToFile([cmd('sleep', ['30']), cmd('cat')], fresh('dump'), { spawner, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(String(timedOut)).toMatch(/sleep: timed out after 0.20s/);
    expect((timedOut as CommandError).timedOut).toBe(true);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 200);
    const cancelled = await pipeToFile([cmd('sleep', ['30']), cmd('cat')], fresh('dump'), { spawner, signal: abort.signal }).catch((e: unknown) => e);
    expect(String(cancelled)).toMatch(/sleep: cancelled/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a tap that throws fails the run (a check that rejected the output)', async () => {
    const err = await pipeToFile([cmd('echo', ['x']), cmd('cat')], fresh('dump'), { spawner, tap: { after: 0, onData: () => { throw new Error('no trailer'); } } }).catch((e: unknown) => e);
    expect(String(err)).toMatch(/echo \| cat: checking its output failed: no trailer/);
  });
});

// Last: terminateAll stops every child this file started, the shared spawner's workers too.
describe('our SIGTERM handler', () => {
  it('terminateAll reaches jobs started by workers, not only our own children', async () => {
    const out = fresh('out');
    const job = spawner.start({ command: cmd('sh', ['-c', 'echo $$; exec sleep 30']), stdin: '/dev/null', stdout: out, stderr: fresh('err') });
    expect(await until(() => lineIn(out))).toBe(true);
    const pid = Number(readFileSync(out, 'utf8').trim());
    // The worker says "S pid" on its own pipe, which can arrive after the job's first output.
    expect(await until(() => liveGroups().includes(pid))).toBe(true);
    expect(terminateAll(500)).toBeGreaterThanOrEqual(2); // the worker and the job's group
    const end = await job.ended;
    expect(end.exitCode).not.toBe(0);
    expect(await until(() => !existsPid(pid))).toBe(true);
    expect(await until(() => liveChildren() === 0)).toBe(true);
  });
});

describe('the worker script on its own', () => {
  it('a TERM to the worker reaches the running job, even before Node has read its "S pid" line', async () => {
    // Run the worker by hand so that nobody reads its "S" line: only the worker can stop the job.
    const dir = mkdtempSync(join(work, 'worker-'));
    const out = join(dir, 'out');
    writeFileSync(join(dir, '1'), `f=('' '/dev/null' '${out}' '${join(dir, 'err')}' '0' 'sh' '-c' 'echo $$; exec sleep 30')\n`);
    const worker = spawn('bash', ['-c', WORKER, 'asb-spawner', dir], { stdio: ['pipe', 'pipe', 'ignore'] });
    worker.stdin.write('x');
    expect(await until(() => lineIn(out))).toBe(true);
    const job = Number(readFileSync(out, 'utf8').trim());
    expect(existsPid(job)).toBe(true);
    const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
    worker.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(await until(() => !existsPid(job))).toBe(true);
  });
});
