import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { resticStallWatch } from '../../lib/engine/restic-stall.js';

// The watchdog of restic backup over a remote link (lib/engine/restic-stall.ts), on a fake
// clock: status lines that only repeat the same counters are no progress; new counters or any
// other line are; a chunk may end mid-line. test/offsite/restic-faults.test.ts cuts a real link.

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

const status = (files: number, bytes: number, seconds: number): string =>
  `{"message_type":"status","seconds_elapsed":${seconds},"percent_done":0.5,"total_files":9,"files_done":${files},"total_bytes":99,"bytes_done":${bytes}}\n`;

test('repeated status lines with the same counters do not keep restic alive', () => {
  const w = resticStallWatch(10_000);
  w.onStdout(status(1, 100, 1));
  for (let s = 2; s <= 9; s++) {
    vi.advanceTimersByTime(1000);
    w.onStdout(status(1, 100, s));
  }
  expect(w.stalled()).toBe(false);
  vi.advanceTimersByTime(2500);
  expect(w.stalled()).toBe(true);
  expect(w.signal.aborted).toBe(true);
  w.end();
});

test('moving counters, and a line cut across chunks, are progress', () => {
  const w = resticStallWatch(10_000);
  for (let s = 1; s <= 30; s++) {
    vi.advanceTimersByTime(1000);
    const line = status(s, s * 100, s);
    w.onStdout(line.slice(0, 40));
    w.onStdout(line.slice(40));
  }
  expect(w.stalled()).toBe(false);
  // The summary (or any other line) counts too.
  vi.advanceTimersByTime(9000);
  w.onStdout('{"message_type":"summary","snapshot_id":"abc"}\n');
  vi.advanceTimersByTime(9000);
  expect(w.stalled()).toBe(false);
  vi.advanceTimersByTime(2500);
  expect(w.stalled()).toBe(true);
  w.end();
});
