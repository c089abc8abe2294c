import { describe, expect, test } from 'vitest';
import { failureReason, parseLlist, type CatalogJob } from '../../lib/fleet/catalog.js';
import { chainLength, fleetVerdict } from '../../lib/fleet/verdict.js';
import { renderFleetPrometheus } from '../../lib/fleet/prometheus.js';

// The pure half of `fleet status`: what the catalog rows mean. The real director is in fleet.test.ts.

const NOW = 2_000_000_000;
let nextId = 1;
function job(client: string, level: string, status: string, hoursAgo: number, name = `${client}-job`): CatalogJob {
  return { jobId: nextId++, name, client, type: 'B', level, status, endedAt: NOW - hoursAgo * 3600, startTime: '', files: 10, bytes: 1000, errors: 0 };
}
const verdict = (clients: string[], jobs: CatalogJob[], reasons = new Map<number, string>()) =>
  fleetVerdict({ clients, jobs, reasons, nowSeconds: NOW, maxAgeSeconds: 26 * 3600 });

describe('restore chain from the catalog', () => {
  test('Full + newest Differential + Incrementals after it; failed jobs are not links', () => {
    const a = [job('a', 'F', 'T', 100), job('a', 'I', 'T', 90), job('a', 'D', 'T', 80), job('a', 'I', 'T', 70), job('a', 'I', 'T', 60)];
    expect(chainLength(a)).toBe(4); // F, D, I, I
    expect(chainLength([job('a', 'I', 'T', 5)])).toBeUndefined(); // no Full retained: no restorable chain
    const c = verdict(['a'], [...a, job('a', 'I', 'f', 50), job('a', 'I', 'T', 40)]).clients[0]!;
    expect(c.restoreChainLength).toBe(5);
    expect(c.status).toBe('stale'); // newest good job 40 h ago > 26 h
    expect(c.failedNow).toBe(false);
    expect(c.lastFailure?.reason).toBe('fatal error');
  });

  test('a new Full restarts the chain', () => {
    expect(chainLength([job('a', 'F', 'T', 9), job('a', 'I', 'T', 8), job('a', 'F', 'T', 7), job('a', 'I', 'W', 6)])).toBe(2);
  });
});

describe('per-client verdicts', () => {
  test('failed now, never backed up, canceled, warnings, running; exit 6 only for failed or stale', () => {
    const jobs = [
      job('ok', 'F', 'T', 2),
      job('bad', 'F', 'T', 3), job('bad', 'I', 'f', 1),
      job('cxl', 'F', 'T', 3), job('cxl', 'I', 'A', 1),
      job('warn', 'F', 'W', 1),
      job('run', 'F', 'T', 2), job('run', 'I', 'R', 0),
    ];
    const bad = jobs.find((j) => j.client === 'bad' && j.status === 'f')!;
    const r = verdict(['ok', 'bad', 'new', 'cxl', 'warn', 'run'], jobs, new Map([[bad.jobId, 'Client "bad" RunScript failed: mysql: cannot connect']]));
    const by = Object.fromEntries(r.clients.map((c) => [c.client, c]));
    expect(by.ok!.status).toBe('ok');
    expect(by.bad).toMatchObject({ status: 'failed', failedNow: true, restoreChainLength: 1, lastGood: { level: 'Full', ageSeconds: 3 * 3600 } });
    expect(by.bad!.problem).toBe(`job ${bad.jobId} (Incremental) failed: Client "bad" RunScript failed: mysql: cannot connect`);
    expect(by.new).toMatchObject({ status: 'stale', problem: 'never backed up' });
    expect(by.cxl).toMatchObject({ status: 'failed', lastFailure: { reason: 'canceled' } });
    expect(by.warn!.status).toBe('warning');
    expect(by.run).toMatchObject({ status: 'ok', running: 1 });
    expect(r.exitCode).toBe(6);
    expect(r.lines[0]).toMatch(/^CRITICAL: 2 failed, 1 stale of 6 clients: bad \(job \d+ \(Incremental\) failed: .*\); cxl \(.*canceled\); new \(never backed up\) \| clients=6 failed=2;;1;0 stale=1;;1;0 oldest_good_age=10800s;;93600;0$/);

    const fine = verdict(['ok', 'warn'], jobs);
    expect([fine.exitCode, fine.severity]).toEqual([0, 'WARNING']);
    const prom = renderFleetPrometheus(r.clients);
    expect(prom).toContain('apiscp_backup_fleet_last_success_timestamp_seconds{client="new"} 0\n');
    expect(prom).toContain('apiscp_backup_fleet_client_failed{client="bad"} 1\n');
    expect(prom).toContain('apiscp_backup_fleet_client_stale{client="new"} 1\n');
    expect(prom).not.toContain('apiscp_backup_fleet_restore_chain_length{client="new"}');
  });
});

describe('bconsole output', () => {
  test('llist blocks and the reason in a job log (the hook\'s own line, not the RunBeforeNow noise)', () => {
    const rows = parseLlist('Using Catalog "MyCatalog"\n           JobId: 4\n            Name: s2-ApisCP\n      ClientName: s2-fd\n       JobStatus: f\n        JobTDate: 1796163334\n\n           JobId: 5\n      JobStatus: T\nYou have messages.\n');
    expect(rows).toEqual([{ JobId: '4', Name: 's2-ApisCP', ClientName: 's2-fd', JobStatus: 'f', JobTDate: '1796163334' }, { JobId: '5', JobStatus: 'T' }]);
    const log = [
      '| s2-fd JobId 4: ClientBeforeJob: apiscp-backup FAILED on vm: hook run     |',
      '| s2-fd JobId 4: ClientBeforeJob:   mysql _server/server-wide export: cannot connect |',
      '| fleet-dir JobId 4: Fatal error: Bad response to RunBeforeNow command: wanted 2000 OK RunBeforeNow',
      '| fleet-dir JobId 4: Fatal error: Client "s2-fd" RunScript failed.   |',
    ].join('\n');
    expect(failureReason(log)).toBe('Client "s2-fd" RunScript failed: mysql _server/server-wide export: cannot connect');
    expect(failureReason('| d JobId 9: Fatal error: Network error with FD during Backup: ERR=Connection reset by peer |')).toBe('Network error with FD during Backup: ERR=Connection reset by peer');
  });
});
