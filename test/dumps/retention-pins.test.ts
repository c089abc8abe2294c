/**
 * The pure parts of "nothing lost": which runs retention deletes after any history of good,
 * failed and empty nights; what pins.json says; how missing databases are accounted for; the
 * lock takeover decision. Through the CLI these are in nothing-lost.test.ts.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { reportError } from '../../lib/cli/context.js';
import { memoryLogger } from '../../lib/log.js';
import { accountForDatabases } from '../../lib/dumps/accounting.js';
import { installedEvidence } from '../../lib/dumps/installed.js';
import { mysqlKind, postgresqlKind } from '../../lib/kinds/index.js';
import { loadConfig } from '../../lib/config/load.js';
import type { Manifest, ManifestEntry } from '../../lib/model/manifest.js';
import { chooseRemovals, databaseKey, runIdTime, type RunFacts } from '../../lib/dumps/retention.js';
import { estimateRunBytes } from '../../lib/dumps/space.js';
import { parsePins, PinsError } from '../../lib/job/pins.js';
import { holderFile, takeOver } from '../../lib/lock/lock.js';
import { computeStatus } from '../../lib/report/status.js';
import { failureSummary } from '../../lib/report/summary.js';
import { renderPrometheus } from '../../lib/report/prometheus.js';
import type { RunState } from '../../lib/report/run-state.js';

const scratchDirs: string[] = [];
afterAll(() => scratchDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}
import { warning, warningsHeadline } from '../../lib/warnings.js';

const DAY = 24 * 3600 * 1000;
const NOW = Date.UTC(2026, 11, 20, 3, 0, 0);
/** Run `daysAgo` days before NOW, with its id and the databases it dumped well. */
function run(daysAgo: number, status: RunFacts['status'], good: string[]): RunFacts {
  const at = NOW - daysAgo * DAY;
  const runId = new Date(at).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return { runId, status, at, good: good.map((d) => databaseKey('mysql', d)) };
}
const policy = (over: Partial<Parameters<typeof chooseRemovals>[1]> = {}): Parameters<typeof chooseRemovals>[1] => ({
  keep: 2,
  keepGoneMs: 30 * DAY,
  now: NOW,
  protectedRuns: new Set(),
  exists: () => true,
  ...over,
});

describe('retention (chooseRemovals)', () => {
  it('keeps dumps.keep complete runs when every run holds every database', () => {
    const runs = [run(0, 'complete', ['a', 'b']), run(1, 'complete', ['a', 'b']), run(2, 'complete', ['a', 'b']), run(3, 'complete', ['a', 'b'])];
    expect(chooseRemovals(runs, policy()).remove).toEqual([runs[2]!.runId, runs[3]!.runId]);
  });

  it('empty nights (a server quietly skipped) never push out the newest good dump of a database that exists', () => {
    // Five "complete" nights without b (the old auto-skip bug), then b's last good run.
    const runs = [0, 1, 2, 3, 4].map((d) => run(d, 'complete', ['a'])).concat([run(5, 'complete', ['a', 'b']), run(6, 'complete', ['a', 'b'])]);
    const d = chooseRemovals(runs, policy());
    expect(d.remove).toEqual([runs[2], runs[3], runs[4], runs[6]].map((r) => r!.runId));
    expect(d.keptFor.get(runs[5]!.runId)).toEqual([databaseKey('mysql', 'b')]);
  });

  it('after failed nights the newest good dump of each database stays; failed runs older than the newest complete one go unless they hold one', () => {
    const runs = [run(0, 'complete', ['a']), run(1, 'failed', ['a', 'b']), run(2, 'failed', ['a', 'b']), run(3, 'complete', ['a', 'b']), run(4, 'complete', ['a', 'b'])];
    const d = chooseRemovals(runs, policy({ keep: 1 }));
    // run 1 holds b's newest good dump; run 2 and the complete runs 3 and 4 hold nothing newest.
    expect(d.remove).toEqual([runs[2], runs[3], runs[4]].map((r) => r!.runId));
  });

  it('a database whose server did not answer (exists unknown) counts as existing', () => {
    const runs = [run(0, 'failed', []), run(40, 'complete', ['a']), run(41, 'complete', ['a'])];
    const d = chooseRemovals(runs, policy({ keep: 1, exists: () => undefined, protectedRuns: new Set([runs[1]!.runId]) }));
    expect(d.remove).toEqual([runs[2]!.runId]);
    const old = [run(0, 'complete', []), run(40, 'complete', ['a'])];
    expect(chooseRemovals(old, policy({ keep: 1, exists: () => undefined })).remove).toEqual([]);
  });

  it('a database gone (site deleted) is kept for keep_gone after its last dump, then its run goes', () => {
    const runs = [run(0, 'complete', ['a']), run(10, 'complete', ['a', 'gone']), run(11, 'complete', ['a', 'gone'])];
    const exists = (k: string): boolean => k !== databaseKey('mysql', 'gone');
    expect(chooseRemovals(runs, policy({ keep: 1, exists })).remove).toEqual([runs[2]!.runId]);
    expect(chooseRemovals(runs, policy({ keep: 1, exists, keepGoneMs: 9 * DAY })).remove).toEqual([runs[1]!.runId, runs[2]!.runId]);
  });

  it('protected runs (latest, pinned, current) are never removed; the newest failed runs are kept', () => {
    const runs = [run(0, 'failed', ['a']), run(1, 'complete', ['a']), run(2, 'complete', ['a']), run(3, 'unreadable', [])];
    const d = chooseRemovals(runs, policy({ keep: 1, protectedRuns: new Set([runs[2]!.runId]) }));
    expect(d.remove).toEqual([runs[3]!.runId]);
  });

  it('run ids carry their time', () => {
    expect(runIdTime('20261126T030512Z-2')).toBe(Date.UTC(2026, 10, 26, 3, 5, 12));
  });
});

describe('pins.json (parsePins)', () => {
  it('reads pins; anything else is an error naming the file, never "no pins"', () => {
    expect(parsePins('[{"runId":"20261201T030000Z","since":"2026-12-01T03:00:00Z","jobId":"7"}]', '/s/pins.json')).toEqual([{ runId: '20261201T030000Z', since: '2026-12-01T03:00:00Z', jobId: '7' }]);
    for (const text of ['[{"runId": "2026', '{}', '[{"runId": 3, "since": "x"}]', '[null]', '']) {
      expect(() => parsePins(text, '/s/pins.json'), text).toThrow(PinsError);
      expect(() => parsePins(text, '/s/pins.json'), text).toThrow(/^\/s\/pins.json: .*Fix or remove it once no backup job is running/);
    }
  });
});

const entry = (database: string, site: string, status: ManifestEntry['status'] = 'ok'): ManifestEntry => ({
  kind: 'mysql', object: 'database', database, site, format: 'sql', compression: 'zstd', startedAt: '2026-12-01T03:00:00Z', durationMs: 1, status,
});
const manifest = (entries: ManifestEntry[]): Manifest => ({
  version: 1, runId: '20261201T030000Z', host: 'h', tool: 'apiscp-backup', startedAt: '2026-12-01T03:00:00Z', finishedAt: '2026-12-01T03:01:00Z', status: 'complete', method: 'native', entries,
});

describe('every database accounted for (accountForDatabases)', () => {
  const previous = manifest([entry('a_wp', 'site1'), entry('b_shop', 'site2'), entry('orphan', '_server'), entry('c_del', 'site3'), entry('x_excl', '_server')]);
  it('dumped again: nothing to say; gone with its site: info; lost while the panel lists it, or without a panel: warning', () => {
    const r = accountForDatabases({
      previous,
      entries: [entry('a_wp', 'site1', 'failed')],
      expected: new Set(['mysql']),
      listed: new Map([['mysql', new Set(['a_wp', 'x_excl'])]]),
      siteOf: (_k, db) => (db === 'b_shop' ? 'site2' : undefined),
    });
    expect(r.missing.map((m) => [m.database, m.reason])).toEqual([
      ['b_shop', 'missing'],
      ['orphan', 'missing'],
      ['c_del', 'gone'],
      ['x_excl', 'excluded'],
    ]);
    expect(r.warnings.map((w) => [w.code, w.database])).toEqual([
      ['database-missing', 'b_shop'],
      ['database-missing', 'orphan'],
    ]);
    expect(r.warnings[0]!.message).toBe("mysql 'b_shop' (site2) was in run 20261201T030000Z but the server no longer lists it (the panel still lists it for site2); its last dump is kept");
  });

  it('a server that did not answer: its databases are "unreachable" (the run failed already), no extra warning', () => {
    const serverDown: ManifestEntry = { ...entry('x', '_server', 'failed'), object: 'server', database: null };
    const r = accountForDatabases({ previous, entries: [serverDown], expected: new Set(['mysql']), listed: new Map(), siteOf: () => undefined });
    expect(new Set(r.missing.map((m) => m.reason))).toEqual(new Set(['unreachable']));
    expect(r.warnings).toEqual([]);
  });

  it('zero databases where the previous run had some is never OK', () => {
    const r = accountForDatabases({ previous, entries: [], expected: new Set(), listed: new Map(), siteOf: () => undefined });
    expect(r.warnings.map((w) => w.code)).toEqual(['no-databases']);
  });
});

describe('space estimate', () => {
  it('the previous run times the margin, at least 1 MiB; no history, no estimate', () => {
    expect(estimateRunBytes(undefined, 1.2)).toBeUndefined();
    const m = manifest([{ ...entry('a', 's'), bytes: 100 * 1024 * 1024 }, { ...entry('b', 's'), bytes: 50 * 1024 * 1024 }]);
    expect(estimateRunBytes(m, 1.2)?.bytes).toBe(Math.ceil(150 * 1024 * 1024 * 1.2));
    expect(estimateRunBytes(manifest([{ ...entry('a', 's'), bytes: 10 }]), 1.2)?.bytes).toBe(1024 * 1024);
  });
});

describe('lock takeover (takeOver)', () => {
  it('removes the lock only while the same dead holder is recorded: a waiter with a stale view never removes a new holder\'s lock', async () => {
    const dir = scratchDir('asb-lock-');
    const lockPath = join(dir, 'x.lock');
    const gone = execa('true');
    const deadPid = gone.pid!;
    await gone;
    const dead = { pid: deadPid, host: hostname(), command: 'apiscp-backup dump', started: '2026-12-01T03:00:00.000Z' };
    // What a slow waiter saw, after a faster one took over and now holds the lock (alive).
    const live = execa('sleep', ['30']);
    try {
      mkdirSync(lockPath);
      const fresh = { pid: live.pid!, host: hostname(), command: 'apiscp-backup dump', started: '2026-12-01T03:00:01.000Z' };
      writeFileSync(holderFile(lockPath), JSON.stringify(fresh));
      await takeOver(lockPath, dead);
      expect(existsSync(lockPath)).toBe(true);
      expect(JSON.parse(readFileSync(holderFile(lockPath), 'utf8'))).toEqual(fresh);
      // Another waiter is mid-takeover (its mutex exists): hands off, removes nothing.
      writeFileSync(holderFile(lockPath), JSON.stringify(dead));
      mkdirSync(`${lockPath}.takeover`);
      await takeOver(lockPath, dead);
      expect(existsSync(lockPath)).toBe(true);
      // The dead holder still recorded and nobody else taking over: removed, holder file first.
      rmdirSync(`${lockPath}.takeover`);
      await takeOver(lockPath, dead);
      expect(existsSync(lockPath)).toBe(false);
      expect(existsSync(holderFile(lockPath))).toBe(false);
      expect(existsSync(`${lockPath}.takeover`)).toBe(false);
    } finally {
      live.kill();
      await live.catch(() => undefined);
    }
  });
});


describe('warnings reach status, the cron summary and metrics', () => {
  const w1 = warning('events-skipped', `mysql "it's": 1 event(s) not in the dump`, { kind: 'mysql', database: "it's" });
  const w2 = warning('database-missing', "mysql 'b_shop' (site2) was in run R but the server no longer lists it", { kind: 'mysql', database: 'b_shop', site: 'site2' });
  const st: RunState = {
    version: 1, engine: 'none', trigger: 'cron', startedAt: '2026-12-20T02:00:00Z', finishedAt: '2026-12-20T02:10:00Z', durationMs: 600_000,
    status: 'warning', problems: [], warnings: [w1, w2], lastSuccessAt: '2026-12-20T02:10:00Z', dumps: { ok: 3, failed: 0, bytes: 10, databases: [] },
  };
  it('status: WARNING, every warning on the first line, Nagios 1, the watchdog stays OK', () => {
    const r = computeStatus({ state: st, now: new Date('2026-12-20T03:00:00Z'), maxAgeMs: 26 * 3600_000 });
    expect(r.lines[0]).toMatch(/^WARNING: mysql "it's": 1 event\(s\) not in the dump; mysql 'b_shop' \(site2\) was in run R but the server no longer lists it \| /);
    expect([r.nagiosCode, r.exitCode, r.ok]).toEqual([1, 0, true]);
  });
  it('summary and headline', () => {
    const text = failureSummary(st, { host: 'web1' });
    expect(text.split('\n')[0]).toBe('apiscp-backup finished with warnings on web1: cron run, engine none, started 2026-12-20T02:00:00Z');
    expect(text).toContain(`  mysql "it's": 1 event(s) not in the dump\n`);
    expect(warningsHeadline([w1, w2, w2])).toBe('3 warnings: events-skipped, database-missing ×2');
  });
  it('Prometheus: a total and one sample per code', () => {
    const prom = renderPrometheus(st);
    expect(prom).toMatch(/^apiscp_backup_warnings\{engine="none"\} 2$/m);
    expect(prom).toMatch(/^apiscp_backup_warnings_by_code\{engine="none",code="database-missing"\} 1$/m);
  });
});

describe('no swallowed errors: a bug is a bug', () => {
  it('an exception that is not a BackupError exits 70, one line on stderr pointing at the log, the stack in the log', () => {
    const log = memoryLogger();
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (written.push(String(chunk)), true));
    let code: number;
    try {
      code = reportError(new TypeError("Cannot read properties of undefined (reading 'entries')"), log, undefined, '/var/log/apiscp-backup.log');
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(70);
    expect(written.join('')).toBe("apiscp-backup: internal error (a bug: please report it with the log): Cannot read properties of undefined (reading 'entries'); the stack is in /var/log/apiscp-backup.log\n");
    expect(log.entries).toEqual([expect.objectContaining({ level: 'error', msg: 'internal error', fields: { error: expect.stringMatching(/^TypeError: Cannot read .*\n\s+at /) } })]);
  });
});

describe("enabled: auto means installed (installedEvidence)", () => {
  const bare = { which: () => undefined, exists: () => false };
  it('a machine without the server: skipped; its data directory or an earlier dump under paths.root: expected; this machine: expected', () => {
    const root = scratchDir('asb-auto-');
    const empty = join(root, 'empty.yaml');
    writeFileSync(empty, '');
    const loaded = loadConfig({ file: empty, root });
    expect(installedEvidence('mysql', mysqlKind.installSigns, loaded, bare)).toBeUndefined();
    expect(installedEvidence('postgresql', postgresqlKind.installSigns, loaded, bare)).toBeUndefined();
    mkdirSync(join(root, 'var/lib/postgresql/15/main'), { recursive: true });
    writeFileSync(join(root, 'var/lib/postgresql/15/main/PG_VERSION'), '15\n');
    expect(installedEvidence('postgresql', postgresqlKind.installSigns, loaded, bare)).toBe(`data directory ${join(root, 'var/lib/postgresql/15/main/PG_VERSION')}`);
    // An earlier run dumped mysql: a server that vanished entirely (package removed) is still expected.
    const run = join(loaded.paths.dumpsDir, '20261201T030000Z');
    mkdirSync(run, { recursive: true });
    writeFileSync(join(run, 'manifest.json'), JSON.stringify(manifest([entry('a_wp', 'site1')])));
    symlinkSync('20261201T030000Z', join(loaded.paths.dumpsDir, 'latest'));
    expect(installedEvidence('mysql', mysqlKind.installSigns, loaded, bare)).toBe(`an earlier run in ${loaded.paths.dumpsDir} dumped mysql`);
    // CI and every ApisCP server have both installed system-wide.
    expect(installedEvidence('mysql', mysqlKind.installSigns, loadConfig({ file: empty, root: scratchDir('asb-auto-') }))).toMatch(/^(server binary|service unit) \//);
  });
});
