import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';

/**
 * A pin says "a backup is reading this dump run": Bacula's pre-backup hook exits before the
 * file daemon reads the dumps, so the process lock cannot cover that window. Retention skips
 * pinned runs; post-backup removes the pin. A pin older than MAX_PIN_MS is ignored (the job died
 * and its post-backup never ran).
 */
export interface Pin {
  readonly runId: string;
  readonly job?: string;
  readonly jobId?: string;
  readonly since: string;
}

const MAX_PIN_MS = 3 * 24 * 3600 * 1000;

function pinFile(loaded: LoadedConfig): string {
  return join(loaded.paths.stateDir, 'pins.json');
}

export function readPins(loaded: LoadedConfig, now = Date.now()): Pin[] {
  try {
    const pins = JSON.parse(readFileSync(pinFile(loaded), 'utf8')) as Pin[];
    return pins.filter((p) => now - Date.parse(p.since) < MAX_PIN_MS);
  } catch {
    return [];
  }
}

export async function addPin(loaded: LoadedConfig, pin: Pin): Promise<void> {
  const pins = readPins(loaded).filter((p) => !(p.jobId && p.jobId === pin.jobId));
  writeFileAtomic(pinFile(loaded), JSON.stringify([...pins, pin], null, 2) + '\n');
}

export async function removePin(loaded: LoadedConfig, jobId?: string): Promise<void> {
  const pins = readPins(loaded);
  // Without a job id (a wrapper script's post-backup) the newest pin is the one it made.
  const keep = jobId ? pins.filter((p) => p.jobId !== jobId) : pins.slice(0, -1);
  if (keep.length === 0) rmSync(pinFile(loaded), { force: true });
  else writeFileAtomic(pinFile(loaded), JSON.stringify(keep, null, 2) + '\n');
}
