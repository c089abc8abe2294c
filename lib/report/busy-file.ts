import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import type { LockHolder } from '../lock/lock.js';

/**
 * The last job that could not run because another held the lock, in `<state.dir>/busy.json`.
 * Not in status.json: the job that holds the lock owns that file (a Bacula pre-backup's pending
 * record must survive for its post-backup), and it would overwrite this failure when it finishes.
 */
export interface BusyFailure {
  readonly version: 1;
  readonly at: string;
  readonly trigger: string;
  readonly command: string;
  readonly job?: { readonly name?: string; readonly id?: string };
  readonly holder?: LockHolder;
  readonly message: string;
}

export function busyFile(stateDir: string): string {
  return join(stateDir, 'busy.json');
}

export function writeBusyFailure(file: string, failure: BusyFailure): void {
  writeFileAtomic(file, JSON.stringify(failure, null, 2) + '\n', { mode: 0o644, dirMode: 0o755 });
}

export function readBusyFailure(file: string): BusyFailure | undefined {
  try {
    const b = JSON.parse(readFileSync(file, 'utf8')) as BusyFailure;
    return b && b.version === 1 && typeof b.at === 'string' && typeof b.message === 'string' ? b : undefined;
  } catch {
    return undefined;
  }
}

/** The one line status and the post-backup hook say about it (a hook's command names its job). */
export function busyText(b: BusyFailure): string {
  return `${b.command} at ${b.at} did not run: ${b.message}`;
}
