import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../lib/config/schema.js';
import { ExitCode } from '../../lib/exit-codes.js';
import { memoryLogger } from '../../lib/log.js';
import { MAX_BODY_BYTES, ping, type HeartbeatConfig } from '../../lib/report/heartbeat.js';
import { renderPrometheus, writePrometheusTextfile } from '../../lib/report/prometheus.js';
import type { RunState } from '../../lib/report/run-state.js';
import { mergeRunState, readRunState, readRunStateWithReason, restoreChainLength, writeRunState } from '../../lib/report/state-file.js';
import { computeStatus } from '../../lib/report/status.js';
import { failureSummary } from '../../lib/report/summary.js';

const HOUR = 3_600_000;
const NOW = new Date('2025-03-10T12:00:00Z');
const MAX_AGE = 26 * HOUR;
const SCOPE = 'backups.automatic-database-exports';
const hoursAgo = (h: number): string => new Date(NOW.getTime() - h * HOUR).toISOString();

function run(over: Partial<RunState> = {}): RunState {
  return {
    version: 1,
    runId: '20250310-030000',
    engine: 'bacula',
    trigger: 'hook',
    startedAt: hoursAgo(9),
    finishedAt: hoursAgo(8),
    durationMs: HOUR,
    status: 'ok',
    problems: [],
    dumps: { ok: 3, failed: 0, bytes: 3 * 1024 * 1024, databases: [] },
    backup: { status: 'ok' },
    ...over,
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'report-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('run state file', () => {
  it('round-trips, writes 0644 and leaves no temp file', () => {
    const file = join(dir, 'state', 'status.json');
    const state = run();
    writeRunState(file, state);
    expect(readRunState(file)).toEqual(state);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(readdirSync(join(dir, 'state'))).toEqual(['status.json']);
  });

  it('tolerates a missing or corrupt file with a reason', () => {
    expect(readRunStateWithReason(join(dir, 'nope.json'))).toMatchObject({ state: undefined, reason: expect.stringMatching(/does not exist/) });
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"version": 1, "status": "ok"'); // cut short by a full disk
    expect(readRunStateWithReason(bad)).toMatchObject({ state: undefined, reason: expect.stringMatching(/not valid JSON/) });
    writeFileSync(bad, JSON.stringify({ version: 1, status: 'weird', startedAt: NOW.toISOString(), engine: 'none', problems: [] }));
    expect(readRunStateWithReason(bad).reason).toMatch(/unknown status/);
    expect(readRunState(bad)).toBeUndefined();
  });
});

describe('mergeRunState', () => {
  it('carries lastSuccessAt forward over a failed run and advances it on success', () => {
    const first = mergeRunState(undefined, run({ finishedAt: hoursAgo(30) }));
    expect(first.lastSuccessAt).toBe(hoursAgo(30));
    const failed = mergeRunState(first, run({ status: 'failed', finishedAt: hoursAgo(5), backup: { status: 'skipped' } }));
    expect(failed.lastSuccessAt).toBe(hoursAgo(30));
    const running = mergeRunState(failed, run({ status: 'running', finishedAt: undefined }));
    expect(running.lastSuccessAt).toBe(hoursAgo(30));
    const ok = mergeRunState(running, run({ finishedAt: hoursAgo(1) }));
    expect(ok.lastSuccessAt).toBe(hoursAgo(1));
  });

  it('a Bacula pre-backup dump (backup pending) is not yet a successful backup; engine none is', () => {
    expect(mergeRunState(undefined, run({ backup: { status: 'pending' } })).lastSuccessAt).toBeUndefined();
    expect(mergeRunState(undefined, run({ engine: 'none', backup: undefined })).lastSuccessAt).toBe(hoursAgo(8));
  });

  it('counts the restore chain: Full resets, Incremental adds, Differential replaces the incrementals', () => {
    let s: RunState | undefined;
    const step = (level: RunState['level'], h: number, status: 'ok' | 'failed' = 'ok'): RunState =>
      (s = mergeRunState(s, run({ level, finishedAt: hoursAgo(h), status, backup: { status } })));
    step('Full', 100);
    expect(s!.chain).toEqual({ lastFullAt: hoursAgo(100), incrementalsSince: 0 });
    expect(restoreChainLength(s!.chain)).toBe(1);
    step('Incremental', 80);
    step('Incremental', 60);
    expect(s!.chain).toEqual({ lastFullAt: hoursAgo(100), incrementalsSince: 2 });
    expect(restoreChainLength(s!.chain)).toBe(3);
    step('Incremental', 50, 'failed'); // a failed backup adds nothing to replay
    expect(restoreChainLength(s!.chain)).toBe(3);
    step('Differential', 40);
    expect(s!.chain).toEqual({ lastFullAt: hoursAgo(100), lastDifferentialAt: hoursAgo(40), incrementalsSince: 0 });
    expect(restoreChainLength(s!.chain)).toBe(2);
    step('Incremental', 20);
    expect(restoreChainLength(s!.chain)).toBe(3);
    step('Full', 1);
    expect(s!.chain).toEqual({ lastFullAt: hoursAgo(1), incrementalsSince: 0 });
    // restic/borg snapshots stand alone: nothing to replay.
    step('Incremental', 0.5);
    step('Snapshot', 0.1);
    expect(restoreChainLength(s!.chain)).toBe(1);
  });
});

describe('computeStatus', () => {
  it('never ran: CRITICAL, exit STALE, says so', () => {
    const r = computeStatus({ state: undefined, stateError: '/x/status.json does not exist (no run recorded yet)', now: NOW, maxAgeMs: MAX_AGE });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(ExitCode.STALE);
    expect(r.nagiosCode).toBe(2);
    expect(r.lines[0]).toBe('CRITICAL: no backup has run yet');
    expect(r.json).toMatchObject({ status: 'critical', lastSuccessAt: null });
  });

  it('corrupt state file: UNKNOWN (Nagios 3) with the reason; the watchdog still exits STALE', () => {
    const r = computeStatus({ state: undefined, stateError: 'status.json: not valid JSON: Unexpected end', now: NOW, maxAgeMs: MAX_AGE });
    expect(r.lines[0]).toMatch(/^UNKNOWN: cannot read run state: .*not valid JSON/);
    expect(r.nagiosCode).toBe(3);
    expect(r.exitCode).toBe(ExitCode.STALE);
  });

  it('ok: OK line with age and perfdata, exit 0', () => {
    const state = mergeRunState(undefined, run({ level: 'Full' }));
    const r = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, scope: { name: SCOPE, on: false } });
    expect(r.ok).toBe(true);
    expect(r.exitCode).toBe(ExitCode.OK);
    expect(r.lines[0]).toBe('OK: last backup 8h ago (engine bacula, 3 databases) | age=28800s;;93600;0 dumps_failed=0;;1;0 warnings=0;1;;0 restore_chain=1;;;1');
    expect(r.lines.join('\n')).toMatch(/restore chain: 1 backup to replay \(full /);
    expect(r.json).toMatchObject({ status: 'ok', ageSeconds: 28800, restoreChainLength: 1, scope: { name: SCOPE, on: false } });
    // JSON form must survive serialization (status --json prints it).
    expect(JSON.parse(JSON.stringify(r.json))).toEqual(r.json);
  });

  it('stale: last success older than max_age', () => {
    const state = mergeRunState(undefined, run({ finishedAt: hoursAgo(30), startedAt: hoursAgo(31) }));
    const r = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE });
    expect(r.ok).toBe(false);
    expect(r.exitCode).toBe(ExitCode.STALE);
    expect(r.lines[0]).toMatch(/^CRITICAL: last successful backup 30h ago, older than max_age 26h/);
  });

  it('failed: the last run failed even though the previous success is fresh', () => {
    const prev = mergeRunState(undefined, run({ finishedAt: hoursAgo(20) }));
    const state = mergeRunState(prev, run({ status: 'failed', problems: ['mysql site1/db: mariadb-dump exited with 2'], backup: { status: 'skipped' } }));
    const r = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE });
    expect(r.exitCode).toBe(ExitCode.STALE);
    expect(r.lines[0]).toMatch(/^CRITICAL: last run failed: mysql site1\/db: mariadb-dump exited with 2/);
  });

  it('running: ok while the lock is held and the last success is fresh; critical when nobody holds it', () => {
    const prev = mergeRunState(undefined, run({ finishedAt: hoursAgo(20) }));
    const state = mergeRunState(prev, run({ status: 'running', startedAt: hoursAgo(0.5), finishedAt: undefined }));
    const holder = { pid: 4242, host: 'h', command: 'apiscp-backup cron', started: hoursAgo(0.5) };
    const held = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, lock: { holder } });
    expect(held.ok).toBe(true);
    expect(held.lines[0]).toMatch(/^OK: .*a run is in progress/);
    expect(held.lines[1]).toMatch(/^running: since .* pid 4242/);
    const died = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, lock: {} });
    expect(died.exitCode).toBe(ExitCode.STALE);
    expect(died.lines[0]).toMatch(/^CRITICAL: run started 30m ago never finished/);
  });

  it('Bacula between pre- and post-backup (backup pending, lock released) is not a dead run', () => {
    const prev = mergeRunState(undefined, run({ finishedAt: hoursAgo(20) }));
    const state = mergeRunState(prev, run({ status: 'running', startedAt: hoursAgo(1), finishedAt: hoursAgo(0.9), backup: { status: 'pending' } }));
    const r = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, lock: {} });
    expect(r.ok).toBe(true);
    expect(r.lines[1]).toMatch(/^running: dumps done .* waiting for the bacula job to finish/);
    // ...but if post-backup never comes, the watchdog clock still runs out.
    const late = computeStatus({ state, now: new Date(NOW.getTime() + 10 * HOUR), maxAgeMs: MAX_AGE, lock: {} });
    expect(late.exitCode).toBe(ExitCode.STALE);
  });

  it('scope back on or unreadable: WARNING, still exit OK', () => {
    const state = mergeRunState(undefined, run());
    const on = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, scope: { name: SCOPE, on: true } });
    expect(on).toMatchObject({ ok: true, exitCode: ExitCode.OK, nagiosCode: 1 });
    expect(on.lines[0]).toMatch(/^WARNING: panel nightly exports are on again/);
    const err = computeStatus({ state, now: NOW, maxAgeMs: MAX_AGE, scope: { name: SCOPE, on: undefined, error: 'cpcmd timed out' } });
    expect(err.lines[0]).toMatch(/^WARNING: cannot read scope .*cpcmd timed out/);
  });
});

describe('failureSummary', () => {
  const failed = run({
    status: 'failed',
    level: 'Incremental',
    dumps: {
      ok: 1,
      failed: 2,
      bytes: 2048,
      databases: [
        { kind: 'mysql', database: 'site1_wp', site: 'site1', status: 'ok', bytes: 2048 },
        { kind: 'mysql', database: 'site2_shop', site: 'site2', status: 'failed', error: 'mariadb-dump exited with 2: View references invalid table(s)\n    at dump (/x/y.js:1:2)\n    at next' },
        { kind: 'postgresql', database: 'site3_app', site: 'site3', status: 'failed', error: "pg_dump --dbname='postgresql://app:hunter22@127.0.0.1/app' exited with 1: connection refused" },
      ],
    },
    backup: { status: 'skipped', detail: 'dumps failed (on_dump_failure: fail)' },
    problems: ['mariadb-dump exited with 2: View references invalid table(s)', 'log file rotated; PASSWORD=s3cret leaked'],
  });

  it('names each failed database with its one-line error, the engine outcome, the log and the run dir', () => {
    const text = failureSummary(failed, { logFile: '/var/log/apiscp-backup.log', dumpsDir: '/var/backup/apiscp-backup', host: 'web1' });
    expect(text).toContain('apiscp-backup FAILED on web1: hook run, engine bacula Incremental');
    expect(text).toContain('dumps: 1 ok, 2 failed');
    expect(text).toContain('mysql site2/site2_shop: mariadb-dump exited with 2: View references invalid table(s)');
    expect(text).toContain('postgresql site3/site3_app:');
    expect(text).toContain('backup (bacula): skipped: dumps failed (on_dump_failure: fail)');
    expect(text).toContain('log: /var/log/apiscp-backup.log');
    expect(text).toContain('run dir: /var/backup/apiscp-backup/20250310-030000');
    expect(text).not.toMatch(/\bat dump\b|y\.js/); // no stack trace
    expect(text).not.toContain('hunter22');
    expect(text).not.toContain('s3cret');
    // the problem already listed with its database is not repeated
    expect(text.match(/View references/g)).toHaveLength(1);
  });

  it('stays within 20 lines however many databases failed', () => {
    const many = run({
      status: 'failed',
      dumps: {
        ok: 0,
        failed: 60,
        bytes: 0,
        databases: Array.from({ length: 60 }, (_, i) => ({ kind: 'mysql', database: `db${i}`, site: `site${i}`, status: 'failed' as const, error: 'exited with 2' })),
      },
      problems: Array.from({ length: 30 }, (_, i) => `problem number ${i}`),
    });
    const lines = failureSummary(many, { logFile: '/l', dumpsDir: '/d' }).trimEnd().split('\n');
    expect(lines.length).toBeLessThanOrEqual(20);
    expect(lines.at(-1)).toBe('run dir: /d/20250310-030000');
    expect(lines.join('\n')).toMatch(/and 52 more failed dumps/);
  });
});

/**
 * A strict reader of the Prometheus text exposition format (0.0.4), enough to prove the file is
 * well-formed: HELP/TYPE at most once per metric and before its samples, samples of one metric
 * together, valid names, label syntax and escapes, numeric values, a final newline.
 */
function parseExposition(text: string): Map<string, { help?: string; type?: string; samples: { labels: Record<string, string>; value: number }[] }> {
  if (!text.endsWith('\n')) throw new Error('missing final newline');
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const metrics = new Map<string, { help?: string; type?: string; samples: { labels: Record<string, string>; value: number }[] }>();
  const closed = new Set<string>();
  let current: string | undefined;
  const enter = (name: string): void => {
    if (current !== name) {
      if (current) closed.add(current);
      if (closed.has(name)) throw new Error(`${name}: lines not grouped together`);
      current = name;
    }
    if (!metrics.has(name)) metrics.set(name, { samples: [] });
  };
  text.slice(0, -1).split('\n').forEach((line, i) => {
    const where = `line ${i + 1}: ${line}`;
    if (line.trim() === '') return;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, 'HELP' | 'TYPE', string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name: ${where}`);
      enter(name);
      const m = metrics.get(name)!;
      if (kind === 'TYPE') {
        if (m.type || m.samples.length) throw new Error(`TYPE repeated or after samples: ${where}`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad type: ${where}`);
        m.type = rest;
      } else {
        if (m.help !== undefined) throw new Error(`HELP repeated: ${where}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad escape in HELP: ${where}`);
        m.help = rest;
      }
      return;
    }
    if (line.startsWith('#')) return;
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( -?\d+)?$/.exec(line);
    if (!s) throw new Error(`not a sample: ${where}`);
    const [, name, , labelText, valueText] = s as unknown as [string, string, string | undefined, string | undefined, string];
    enter(name);
    const labels: Record<string, string> = {};
    if (labelText) {
      const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"\s*(,|$)/y;
      let pos = 0;
      while (pos < labelText.length) {
        LABEL.lastIndex = pos;
        const l = LABEL.exec(labelText);
        if (!l) throw new Error(`bad labels: ${where}`);
        if (l[1]! in labels) throw new Error(`duplicate label: ${where}`);
        labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
        pos = LABEL.lastIndex;
      }
    }
    const value = /^(NaN|[+-]Inf)$/.test(valueText) ? Number(valueText.replace('Inf', 'Infinity')) : Number(valueText);
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^(NaN|[+-]Inf)$/.test(valueText) || Number.isNaN(value) !== (valueText === 'NaN')) {
      throw new Error(`bad value: ${where}`);
    }
    metrics.get(name)!.samples.push({ labels, value });
  });
  return metrics;
}

describe('prometheus textfile', () => {
  it('writes a file that parses, with every metric, HELP/TYPE and the engine label', () => {
    const textDir = join(dir, 'node_exporter');
    const file = join(textDir, 'apiscp_backup.prom');
    const state = mergeRunState(mergeRunState(undefined, run({ level: 'Full', finishedAt: hoursAgo(30) })), run({ level: 'Incremental', backup: { status: 'ok', bytes: 5000 } }));
    writePrometheusTextfile(file, state);
    expect(readdirSync(textDir)).toEqual(['apiscp_backup.prom']); // the temp file is gone
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const m = parseExposition(readFileSync(file, 'utf8'));
    const value = (name: string, labels: Record<string, string> = { engine: 'bacula' }): number | undefined =>
      m.get(name)?.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))?.value;
    for (const [name, metric] of m) {
      expect(metric.type, name).toBe('gauge');
      expect(metric.help, name).toBeTruthy();
    }
    expect(value('apiscp_backup_last_success_timestamp_seconds')).toBe(Date.parse(hoursAgo(8)) / 1000);
    expect(value('apiscp_backup_last_run_timestamp_seconds')).toBe(Date.parse(hoursAgo(9)) / 1000);
    expect(value('apiscp_backup_last_run_duration_seconds')).toBe(3600);
    expect(value('apiscp_backup_last_run_bytes', { engine: 'bacula', part: 'dumps' })).toBe(3 * 1024 * 1024);
    expect(value('apiscp_backup_last_run_bytes', { engine: 'bacula', part: 'backup' })).toBe(5000);
    expect(value('apiscp_backup_dump_failures')).toBe(0);
    expect(value('apiscp_backup_last_run_success')).toBe(1);
    expect(value('apiscp_backup_restore_chain_length')).toBe(2);
  });

  it('a failed first run: success timestamp 0, success 0, failures counted, still parses', () => {
    const state = mergeRunState(undefined, run({ engine: 'restic', status: 'failed', dumps: { ok: 1, failed: 2, bytes: 10, databases: [] }, backup: { status: 'skipped' } }));
    const m = parseExposition(renderPrometheus(state));
    expect(m.get('apiscp_backup_last_success_timestamp_seconds')!.samples).toEqual([{ labels: { engine: 'restic' }, value: 0 }]);
    expect(m.get('apiscp_backup_last_run_success')!.samples[0]!.value).toBe(0);
    expect(m.get('apiscp_backup_dump_failures')!.samples[0]!.value).toBe(2);
    expect(m.get('apiscp_backup_restore_chain_length')!.samples).toEqual([]);
  });

  it('the test parser itself rejects broken files', () => {
    expect(() => parseExposition('x 1')).toThrow(/final newline/);
    expect(() => parseExposition('# TYPE x gauge\nx{a="b} 1\n')).toThrow(/bad labels|not a sample/);
    expect(() => parseExposition('x 1\n# TYPE x gauge\n')).toThrow(/after samples/);
    expect(() => parseExposition('x 1\ny 1\nx 2\n')).toThrow(/grouped/);
    expect(() => parseExposition('x one\n')).toThrow(/bad value/);
  });
});

describe('heartbeat', () => {
  interface Hit {
    method: string;
    url: string;
    body: string;
  }
  let server: Server;
  let base: string;
  const hits: Hit[] = [];
  const sockets = new Set<import('node:net').Socket>();

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        hits.push({ method: req.method!, url: req.url!, body: Buffer.concat(chunks).toString('utf8') });
        if (req.url!.startsWith('/hang')) return; // never answers
        if (req.url!.startsWith('/missing')) {
          res.writeHead(404).end('not found');
          return;
        }
        if (req.url!.startsWith('/flaky') && hits.filter((h) => h.url === req.url).length === 1) {
          res.writeHead(503).end('busy');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
      });
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => {
    hits.length = 0;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const hb = (over: Partial<HeartbeatConfig> = {}): HeartbeatConfig => ({
    ...configSchema.shape.monitor.parse({}).heartbeat,
    start: `${base}/ping/abc/start`,
    success: `${base}/ping/abc`,
    failure: `${base}/ping/abc/fail`,
    ...over,
  });

  it('start, success and failure reach the monitor; no log tail unless enabled', async () => {
    const log = memoryLogger();
    expect(await ping('start', hb(), { log, logTail: 'tail' })).toBe(true);
    expect(await ping('success', hb(), { log, logTail: 'tail' })).toBe(true);
    expect(await ping('failure', hb(), { log, logTail: 'dump of site2_shop failed' })).toBe(true);
    expect(hits).toEqual([
      { method: 'GET', url: '/ping/abc/start', body: '' },
      { method: 'GET', url: '/ping/abc', body: '' },
      { method: 'GET', url: '/ping/abc/fail', body: '' },
    ]);
    expect(log.problems).toEqual([]);
  });

  it('with send_log_tail the failure ping carries the end of the log, capped at 10 KB', async () => {
    const log = memoryLogger();
    const longLog = 'é'.repeat(20_000) + '\nmariadb-dump exited with 2 for site2_shop\n';
    expect(await ping('failure', hb({ send_log_tail: true }), { log, logTail: longLog })).toBe(true);
    expect(hits).toHaveLength(1);
    expect(hits[0]!.method).toBe('POST');
    expect(hits[0]!.body.endsWith('mariadb-dump exited with 2 for site2_shop\n')).toBe(true);
    expect(Buffer.byteLength(hits[0]!.body)).toBeLessThanOrEqual(MAX_BODY_BYTES);
    expect(hits[0]!.body).not.toContain('\uFFFD'); // cut at a character boundary
  });

  it('retries a 5xx, gives up on a 404 with a warning', async () => {
    const log = memoryLogger();
    expect(await ping('success', hb({ success: `${base}/flaky/1` }), { log, backoffMs: 10 })).toBe(true);
    expect(hits.map((h) => h.url)).toEqual(['/flaky/1', '/flaky/1']);
    hits.length = 0;
    expect(await ping('success', hb({ success: `${base}/missing/secret-uuid` }), { log, backoffMs: 10 })).toBe(false);
    expect(hits).toHaveLength(1);
    expect(log.problems).toEqual([expect.stringMatching(/heartbeat success to 127\.0\.0\.1:\d+ failed: HTTP 404/)]);
    expect(log.problems[0]).not.toContain('secret-uuid');
  });

  it('a monitor that never answers: times out, warns, does not throw, bounded time', async () => {
    const log = memoryLogger();
    const started = Date.now();
    const result = await ping('failure', hb({ failure: `${base}/hang`, timeout: '300ms', retries: 1 }), { log, backoffMs: 50 });
    const took = Date.now() - started;
    expect(result).toBe(false);
    expect(hits).toHaveLength(2);
    expect(took).toBeGreaterThanOrEqual(600);
    expect(took).toBeLessThan(2000);
    expect(log.problems).toEqual([expect.stringMatching(/heartbeat failure to .* failed: no answer within 0\.3s/)]);
  });

  it('nothing listening and no URL configured: false, never throws', async () => {
    const log = memoryLogger();
    // A port that was free a moment ago (port 1 is on fetch's blocked list, so not that).
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    expect(await ping('start', hb({ start: `http://127.0.0.1:${port}/x`, retries: 0 }), { log })).toBe(false);
    expect(log.problems[0]).toMatch(/ECONNREFUSED/);
    expect(await ping('start', hb({ start: undefined }), { log })).toBe(false);
  });
});
