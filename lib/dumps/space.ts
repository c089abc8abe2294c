import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { Manifest } from '../model/manifest.js';

/** Below this the estimate is noise (a first run, a server with a few small sites). */
const MIN_BYTES = 1024 * 1024;

/** The dumps dir has less free space than the run is estimated to need: nothing was written or deleted. */
export class NotEnoughSpaceError extends BackupError {
  constructor(dir: string, needed: number, free: number, basis: string) {
    super(`not enough free space in ${dir}: this run needs about ${mib(needed)} (${basis}), ${mib(free)} free; nothing was written or deleted`, ExitCode.DUMP_FAILED, { dir, needed, free });
  }
}

/** Estimated bytes of this run: the previous run's dumps times `margin` (databases grow). */
export function estimateRunBytes(previous: Manifest | undefined, margin: number): { bytes: number; basis: string } | undefined {
  if (!previous) return undefined;
  const total = previous.entries.reduce((n, e) => n + (e.bytes ?? 0), 0);
  return { bytes: Math.max(MIN_BYTES, Math.ceil(total * margin)), basis: `run ${previous.runId} wrote ${mib(total)}, times dumps.space_margin ${margin}` };
}

/** Bytes an unprivileged writer may still use on the filesystem holding `dir` (or its nearest existing parent). */
export function freeBytes(dir: string): number {
  for (let d = dir; ; d = dirname(d)) {
    try {
      const s = statfsSync(d);
      return s.bavail * s.bsize;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || d === dirname(d)) throw err;
    }
  }
}

/**
 * Fail before the run touches anything when the estimate does not fit. Space retention would
 * free afterwards is not counted: retention runs only once this run is complete (rule: a failed
 * or empty night must never cost the last good dump).
 */
export function checkSpace(dir: string, previous: Manifest | undefined, margin: number): void {
  const estimate = estimateRunBytes(previous, margin);
  if (!estimate) return;
  const free = freeBytes(dir);
  if (free < estimate.bytes) throw new NotEnoughSpaceError(dir, estimate.bytes, free, estimate.basis);
}

function mib(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}
