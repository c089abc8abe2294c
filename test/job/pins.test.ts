import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { addPin, PinsError, readPins, removePin } from '../../lib/job/pins.js';

// Pins are what keeps retention away from a dump run Bacula is still reading after pre-backup
// exited: unit tests on a real state directory.

const top = mkdtempSync(join(tmpdir(), 'pins-test-'));
afterAll(() => rmSync(top, { recursive: true, force: true }));
let n = 0;

function fresh() {
  const dir = join(top, String(n++));
  const config = configSchema.parse({ paths: { root: dir } });
  const loaded = { config, file: undefined, paths: resolvePaths(config) };
  return { loaded, file: join(loaded.paths.stateDir, 'pins.json') };
}

describe('pins', () => {
  it('no file is no pins; add, replace per job id, remove by job id, the last removal removes the file', async () => {
    const { loaded, file } = fresh();
    expect(readPins(loaded)).toEqual([]);
    const since = new Date().toISOString();
    await addPin(loaded, { runId: 'r1', jobId: '7', since });
    await addPin(loaded, { runId: 'r2', jobId: '8', since });
    // Bacula reruns job 7: its pin moves to the new run instead of piling up.
    await addPin(loaded, { runId: 'r3', jobId: '7', since });
    expect(readPins(loaded).map((p) => [p.jobId, p.runId])).toEqual([['8', 'r2'], ['7', 'r3']]);
    await removePin(loaded, '8');
    expect(readPins(loaded).map((p) => p.runId)).toEqual(['r3']);
    await removePin(loaded, '7');
    expect(existsSync(file)).toBe(false);
    expect(readPins(loaded)).toEqual([]);
  });

  it('without a job id (a wrapper script) post-backup removes the newest pin only', async () => {
    const { loaded } = fresh();
    const since = new Date().toISOString();
    await addPin(loaded, { runId: 'old', since });
    await addPin(loaded, { runId: 'new', since });
    await removePin(loaded);
    expect(readPins(loaded).map((p) => p.runId)).toEqual(['old']);
  });

  it('a pin whose job died (older than three days) no longer holds a run', async () => {
    const { loaded, file } = fresh();
    const now = Date.parse('2026-12-01T00:00:00Z');
    const at = (days: number): string => new Date(now - days * 86_400_000).toISOString();
    await addPin(loaded, { runId: 'first', since: new Date().toISOString() }); // creates the state dir
    writeFileSync(file, JSON.stringify([{ runId: 'dead', since: at(4) }, { runId: 'alive', since: at(2) }]));
    expect(readPins(loaded, now).map((p) => p.runId)).toEqual(['alive']);
    expect(readPins(loaded, now - 3 * 86_400_000).map((p) => p.runId)).toEqual(['dead', 'alive']);
  });

  it('an unreadable pins.json is an error naming the file, never "no pins"', async () => {
    const { loaded, file } = fresh();
    await addPin(loaded, { runId: 'r', since: new Date().toISOString() });
    writeFileSync(file, '[{"runId": "r", "since": ');
    expect(() => readPins(loaded)).toThrow(PinsError);
    expect(() => readPins(loaded)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON`));
    writeFileSync(file, '[{"runId": "r"}]');
    expect(() => readPins(loaded)).toThrow(/entry 0 is not a pin/);
    writeFileSync(file, '{}');
    expect(() => readPins(loaded)).toThrow(/not a JSON array/);
    // Adding a pin over a damaged file fails too: it would otherwise drop the pins it cannot read.
    await expect(addPin(loaded, { runId: 'x', since: new Date().toISOString() })).rejects.toBeInstanceOf(PinsError);
  });
});
