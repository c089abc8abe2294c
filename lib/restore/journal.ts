import { appendFileSync, mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import type { RestoreProof } from './database.js';

/**
 * Every restore leaves a record (who, what, from which backup, result) in the log and in
 * `<state.dir>/restores.jsonl`: a restore changes customers' data, so it must be traceable.
 */
export interface RestoreRecord {
  readonly command: string;
  readonly what: string;
  readonly from?: string;
  readonly runId?: string;
  readonly result: 'ok' | 'failed' | 'refused' | 'dry-run';
  readonly detail?: string;
  readonly safetyDumps?: readonly string[];
  readonly accountsCreated?: readonly string[];
  readonly changes?: Readonly<Record<string, number>>;
  /** Per restored database (`kind:name`): its comparison with the dump-time inventory, or why none was made. */
  readonly comparisons?: Readonly<Record<string, RestoreProof>>;
}

export function journalFile(loaded: LoadedConfig): string {
  return join(loaded.paths.stateDir, 'restores.jsonl');
}

function who(): string {
  const sudo = process.env.SUDO_USER;
  let self = String(process.getuid?.() ?? '?');
  try {
    self = userInfo().username;
  } catch {
    /* a uid without a passwd entry: keep the number */
  }
  return sudo ? `${sudo} (via sudo as ${self})` : self;
}

export function recordRestore(loaded: LoadedConfig, log: Logger, record: RestoreRecord): void {
  const entry = { at: new Date().toISOString(), who: who(), pid: process.pid, ...record };
  const line = `restore ${record.result}: ${record.what}${record.from ? ` from ${record.from}` : ''}${record.detail ? `: ${record.detail}` : ''}`;
  if (record.result === 'failed') log.error(line, entry);
  else log.info(line, entry);
  try {
    mkdirSync(loaded.paths.stateDir, { recursive: true, mode: 0o755 });
    appendFileSync(journalFile(loaded), JSON.stringify(entry) + '\n', { mode: 0o640 });
  } catch (err) {
    log.warn(`cannot append to ${journalFile(loaded)}: ${(err as Error).message}`);
  }
}
