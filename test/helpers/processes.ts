import { readFileSync } from 'node:fs';

/**
 * Whether `pid` still runs something. A zombie counts as gone: in a container whose init does
 * not reap orphans (CI's), a killed grandchild stays a zombie for good, and `kill(pid, 0)` still
 * succeeds on it. Pid 0 and below are refused: `kill(0, 0)` would ask about our own group.
 */
export function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`isRunning: not a process id: ${pid}`);
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
