/**
 * A signal at any moment of a real dump ends it cleanly and soon (issue: the bad night). A database
 * of a few hundred MB of SQL is dumped once to learn how long a dump takes; then dumps are
 * interrupted at points spread over that whole time (connecting, rows streaming, the compressor
 * flushing, the inventory, the manifest), with SIGTERM, SIGINT and SIGHUP in turn. Each time:
 * exit 143 within 10 s, every process the CLI started gone, no `.inprogress` directory or temp
 * file, no secret directory, the lock free, the interruption in the log.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Servers } from '../../lib/throwaway/servers.js';
import { isRunning } from '../helpers/processes.js';
import { sandboxPool, type Sandbox } from '../helpers/sandbox.js';

const pool = sandboxPool({});
let servers: Servers;
let sb: Sandbox;
const sandbox = (): Sandbox => sb;

beforeAll(async () => {
  servers = await pool.start();
  // ~330 MB of SQL in three InnoDB tables (the size the hang was found with).
  let sql = 'CREATE DATABASE intr; USE intr;';
  for (const t of ['a', 'b', 'c']) {
    sql += `CREATE TABLE ${t} (id INT PRIMARY KEY, s TEXT) ENGINE=InnoDB; INSERT INTO ${t} SELECT seq, REPEAT(MD5(seq), 23) FROM seq_1_to_150000;`;
  }
  await servers.mariadb.sql(sql);
  // One database is the subject: the sandbox's PostgreSQL stays out of it.
  sb = await pool.sandbox({ config: { databases: { postgresql: { enabled: false } } } });
  // The CLI's TMPDIR on a tmpfs of its own: its secret directories go there (lib/secret-dir.ts),
  // where no other test's can be mistaken for them.
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', sb.tmpDir]);
}, 600_000);

afterAll(async () => {
  if (sb) await execa('umount', [sb.tmpDir]).catch(() => undefined);
  await pool.destroy();
});

/** Every descendant of `pid` (children lead their own process groups, but stay descendants). */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parentOf.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone meanwhile */
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [child, parent] of parentOf) if (parent === p) (out.push(child), walk(child));
  };
  walk(pid);
  return out;
}

function secretDirs(): string[] {
  return readdirSync(sandbox().tmpDir).filter((n) => n.startsWith('asb-mysql-'));
}

function leftovers(): string[] {
  const dir = sandbox().dumpsDir;
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.endsWith('.inprogress') || e.name.includes('.tmp-')) out.push(join(d, e.name));
      if (e.isDirectory()) walk(join(d, e.name));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

describe('interrupting a dump of ~330 MB of SQL', () => {
  let fullMs = 0;

  it('a whole dump, for its duration', async () => {
    // The shorter of two: the first one also warms the server's buffer pool.
    const times: number[] = [];
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const r = await sandbox().cli(['dump']);
      times.push(Date.now() - started);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    fullMs = Math.min(...times);
    console.log(`whole dump: ${times.join(' ms, ')} ms`);
  });

  /** The CLI running `dump`, stopped right after `ms` with `sig`; undefined when it had finished already (the point was too late). */
  async function interruptAfter(ms: number, signals: readonly NodeJS.Signals[], seen: Set<number>): Promise<{ exitCode?: number; stderr?: string } | 'hung' | undefined> {
    const child = sandbox().spawnCli(['dump']);
    child.catch(() => undefined);
    // The earliest point is the CLI's first child (the panel, the first connection): before
    // that, Node itself is still starting and a signal ends it by the signal, nothing done.
    const deadline = Date.now() + ms;
    while (Date.now() < deadline || seen.size === 0) {
      for (const p of descendants(child.pid!)) seen.add(p);
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      for (const sig of signals) process.kill(child.pid!, sig);
    } catch {
      await child;
      return undefined;
    }
    const result = await Promise.race([child.then((x) => ({ exitCode: x.exitCode, stderr: String(x.stderr) }), (e: { exitCode?: number; stderr?: string }) => e), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    if (result === 'hung') process.kill(child.pid!, 'SIGKILL');
    // Exit 0: the dump was done before the signal reached it.
    return result !== 'hung' && result.exitCode === 0 ? undefined : result;
  }

  const points = [0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95];
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  for (const [i, at] of points.entries()) {
    const sig = signals[i % signals.length]!;
    it(`${sig} at ${Math.round(at * 100)} % of a dump: exit 143 within 10 s, nothing left`, async () => {
      const sb = sandbox();
      const seen = new Set<number>();
      // A dump that finished before the signal (this machine's speed varies) is tried again earlier.
      let result: Awaited<ReturnType<typeof interruptAfter>>;
      let point = at;
      for (let tries = 0; (result = await interruptAfter(point * fullMs, [sig], seen)) === undefined && tries < 4; tries++) point *= 0.6;
      if (result === undefined) throw new Error(`${sig}: every dump finished before the signal`);
      if (result === 'hung') throw new Error(`${sig} at ${point}: still running 10 s after the signal`);
      console.log(`${sig} at ${Math.round(point * 100)} %: exit ${result.exitCode} (${seen.size} children seen): ${String(result.stderr).slice(-300)}`);
      expect(result.exitCode, String(result.stderr)).toBe(143);
      expect(String(result.stderr)).toMatch(new RegExp(`interrupted by ${sig}`));
      await new Promise((r) => setTimeout(r, 200));
      expect([...seen].filter(isRunning), 'processes the CLI started').toEqual([]);
      expect(leftovers()).toEqual([]);
      expect(secretDirs()).toEqual([]);
      expect(existsSync(sb.lockPath), 'the lock').toBe(false);
      expect(readFileSync(sb.logFile, 'utf8')).toMatch(new RegExp(`interrupted by ${sig}`));
    });
  }

  it('a second signal ends it at once, lock released; the next dump then succeeds', async () => {
    const sb = sandbox();
    let result: Awaited<ReturnType<typeof interruptAfter>>;
    let point = 0.4;
    for (let tries = 0; (result = await interruptAfter(point * fullMs, ['SIGTERM', 'SIGINT'], new Set())) === undefined && tries < 4; tries++) point *= 0.6;
    if (result === undefined || result === 'hung') throw new Error(`two signals: ${result ?? 'every dump finished first'}`);
    expect(result.exitCode).toBe(143);
    expect(existsSync(sb.lockPath), 'the lock').toBe(false);
    expect(leftovers()).toEqual([]);
    const next = await sb.cli(['dump']);
    expect(next.exitCode, next.stderr).toBe(0);
  });
});

describe('interrupting restore db --force of that database', () => {
  const checksums = (): Promise<string> => servers.mariadb.sql('CHECKSUM TABLE intr.a, intr.b, intr.c EXTENDED');

  it('SIGTERM while the dump loads: exit 143 within 10 s, nothing running, the lock free; the previous content is back, or in the safety dump the message names', async () => {
    const sb = sandbox();
    const before = await checksums();
    const child = sb.spawnCli(['restore', 'db', 'intr', '--force']);
    child.catch(() => undefined);
    const seen = new Set<number>();
    // The load has begun when the server runs an INSERT into the database (the safety dump before
    // it only reads).
    const loading = async (): Promise<boolean> => Number((await servers.mariadb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = 'intr' AND INFO LIKE 'INSERT%'")).trim()) > 0;
    const started = Date.now();
    while (!(await loading()) && child.exitCode === null && Date.now() - started < 120_000) {
      for (const p of descendants(child.pid!)) seen.add(p);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(child.exitCode, 'the restore ended before its load began').toBeNull();
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of descendants(child.pid!)) seen.add(p);
    const signalled = Date.now();
    process.kill(child.pid!, 'SIGTERM');
    const result = await Promise.race([child.then((x) => ({ exitCode: x.exitCode, stderr: String(x.stderr) }), (e: { exitCode?: number; stderr?: string }) => ({ exitCode: e.exitCode, stderr: String(e.stderr) })), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    if (result === 'hung') process.kill(child.pid!, 'SIGKILL');
    expect(result, 'still running 10 s after SIGTERM').not.toBe('hung');
    const { exitCode, stderr } = result as { exitCode?: number; stderr: string };
    console.log(`restore --force, SIGTERM 1.5 s into the load: exit ${exitCode} after ${Date.now() - signalled} ms: ${stderr.slice(-400)}`);
    expect(exitCode, stderr).toBe(143);
    await new Promise((r) => setTimeout(r, 200));
    expect([...seen].filter(isRunning), 'processes the CLI started').toEqual([]);
    expect(existsSync(sb.lockPath), 'the lock').toBe(false);
    if ((await checksums().catch(() => 'gone')) !== before) {
      // Cut off while it loaded the previous content back: the message names the safety dump,
      // and loading that by hand gives the database back as it was.
      const file = /safety dump (\S+\.sql\.zst)/.exec(stderr)?.[1];
      expect(file, stderr).toBeDefined();
      expect(existsSync(file!)).toBe(true);
      await servers.mariadb.sql('DROP DATABASE IF EXISTS intr; CREATE DATABASE intr');
      await execa('sh', ['-c', `zstd -dc "$1" | mariadb --no-defaults --socket="$2" --user=root intr`, 'sh', file!, servers.mariadb.socket]);
    }
    expect(await checksums()).toBe(before);
  });
});
