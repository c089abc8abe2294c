import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';

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

/**
 * The pins in force. No file means no pins. A file we cannot read or parse is an error, never
 * "no pins": retention would then delete a run Bacula is still reading.
 */
export function readPins(loaded: LoadedConfig, now = Date.now()): Pin[] {
  const file = pinFile(loaded);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PinsError(file, `cannot read it: ${(err as Error).message}`);
  }
  return parsePins(text, file).filter((p) => now - Date.parse(p.since) < MAX_PIN_MS);
}

/** Pure: the pins in a pins.json text, or PinsError naming the file and what is wrong. */
export function parsePins(text: string, file: string): Pin[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new PinsError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(raw)) throw new PinsError(file, 'not a JSON array');
  for (const [i, p] of raw.entries()) {
    const pin = p as Partial<Pin> | null;
    if (typeof pin !== 'object' || pin === null || typeof pin.runId !== 'string' || typeof pin.since !== 'string' || Number.isNaN(Date.parse(pin.since))) {
      throw new PinsError(file, `entry ${i} is not a pin ({"runId": "…", "since": "<date>"})`);
    }
  }
  return raw as Pin[];
}

/** pins.json is unreadable: we cannot know which runs a backup is reading, so we delete nothing. */
export class PinsError extends BackupError {
  constructor(file: string, why: string) {
    super(`${file}: ${why}; it says which dump runs a backup (Bacula) is still reading. Fix or remove it once no backup job is running`, ExitCode.DUMP_FAILED, { file });
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
