import { describe, expect, it } from 'vitest';
import { runState, type RunStateFacts } from '../../lib/report/run-state.js';
import { warning, WarningCodes } from '../../lib/warnings.js';

// The one constructor of a run's state: its status follows from the facts, never set by hand.

const base: RunStateFacts = { engine: 'restic', trigger: 'run', startedAt: '2026-12-01T03:00:00.000Z', problems: [], warnings: [], failed: false };
const at = new Date('2026-12-01T03:05:00.000Z');

describe('runState', () => {
  it('ok, warning (a problem, a warning, or degraded), failed: in that order of weight', () => {
    expect(runState(base, at).status).toBe('ok');
    expect(runState({ ...base, problems: ['mysql x: failed'] }, at).status).toBe('warning');
    expect(runState({ ...base, warnings: [warning(WarningCodes.EVENTS_SKIPPED, 'events')] }, at).status).toBe('warning');
    expect(runState({ ...base, degraded: true }, at).status).toBe('warning');
    expect(runState({ ...base, degraded: true, warnings: [warning(WarningCodes.EVENTS_SKIPPED, 'e')], failed: true }, at).status).toBe('failed');
  });

  it('finished now unless still running; the facts are kept, the helpers are not', () => {
    const done = runState({ ...base, runId: 'r1' }, at);
    expect(done).toEqual({ version: 1, engine: 'restic', trigger: 'run', startedAt: base.startedAt, runId: 'r1', problems: [], warnings: [], finishedAt: at.toISOString(), durationMs: 300_000, status: 'ok' });
    const pending = runState({ ...base, finished: false }, at);
    expect(pending.finishedAt).toBeUndefined();
    expect(pending.durationMs).toBeUndefined();
    expect(Object.keys(pending)).not.toContain('failed');
  });
});
