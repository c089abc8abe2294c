import { readFileSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { PanelError } from '../errors.js';
import { openPanel, requirePanel, type Cpcmd, type PanelOptions } from './cpcmd.js';

/**
 * The panel's nightly database exports run from anacron at a random time and would race our
 * backups. Turning this scope off makes our run the only exporter; we remember what it was so
 * `scope restore` (or uninstall) can hand the panel back exactly as we found it.
 */
export const EXPORT_SCOPE = 'backups.automatic-database-exports';

export interface ScopeRecord {
  readonly scope: string;
  /** The value before we first disabled it: what restore puts back. */
  readonly previous: boolean;
  readonly recordedAt: string;
  readonly host: string;
}

export interface ScopeStatus {
  readonly scope: string;
  readonly enabled: boolean;
  /** Present while we hold the scope disabled. */
  readonly record: ScopeRecord | undefined;
  readonly cpcmd: string;
}

export interface ScopeChange {
  readonly scope: string;
  readonly before: boolean;
  readonly after: boolean;
  /** Whether the panel setting was changed by this call. */
  readonly changed: boolean;
  /** 'disabled' | 'already-disabled' | 'restored' | 'already-restored' | 'nothing-recorded' */
  readonly outcome: 'disabled' | 'already-disabled' | 'restored' | 'already-restored' | 'nothing-recorded';
  readonly message: string;
  readonly record: ScopeRecord | undefined;
}

export function scopeRecordPath(loaded: LoadedConfig): string {
  return join(loaded.paths.stateDir, 'scope.json');
}

export async function scopeStatus(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeStatus> {
  const panel = requirePanel(loaded.config, options);
  const enabled = await getScope(panel);
  return { scope: EXPORT_SCOPE, enabled, record: readRecord(scopeRecordPath(loaded)), cpcmd: panel.path };
}

/** Turn nightly exports off. The first call records the original value; later calls keep it. */
export async function scopeDisable(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeChange> {
  return disableWith(requirePanel(loaded.config, options), loaded);
}

/** Put back the recorded value and forget the record. Without a record there is nothing to do. */
export async function scopeRestore(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeChange> {
  const panel = requirePanel(loaded.config, options);
  const file = scopeRecordPath(loaded);
  const record = readRecord(file);
  const before = await getScope(panel);
  if (!record) {
    return { scope: EXPORT_SCOPE, before, after: before, changed: false, outcome: 'nothing-recorded', record, message: `${EXPORT_SCOPE} has no recorded value to restore (it is ${onOff(before)})` };
  }
  if (before !== record.previous) await setScope(panel, record.previous);
  // Removed only after the panel took the value, so a failed restore can simply be retried.
  removeRecord(file);
  const changed = before !== record.previous;
  return {
    scope: EXPORT_SCOPE,
    before,
    after: record.previous,
    changed,
    outcome: changed ? 'restored' : 'already-restored',
    record,
    message: changed ? `${EXPORT_SCOPE} restored to ${onOff(record.previous)}` : `${EXPORT_SCOPE} is already ${onOff(record.previous)}; record removed`,
  };
}

/**
 * For the pre-backup hook: a panel update (`upcp -b`) may switch the exports back on. Returns a
 * warning when it had to disable them, undefined when all is well or there is no panel at all.
 */
export async function ensureScopeDisabled(loaded: LoadedConfig, options: PanelOptions = {}): Promise<string | undefined> {
  const panel = openPanel(loaded.config, options);
  if (!panel) return undefined;
  const hadRecord = readRecord(scopeRecordPath(loaded)) !== undefined;
  const change = await disableWith(panel, loaded);
  if (!change.changed) return undefined;
  return hadRecord
    ? `${EXPORT_SCOPE} was on again (a panel update?); disabled it so the panel's nightly exports do not race this backup`
    : `${EXPORT_SCOPE} was on; disabled it so the panel's nightly exports do not race this backup (scope restore puts it back)`;
}

async function disableWith(panel: Cpcmd, loaded: LoadedConfig): Promise<ScopeChange> {
  const file = scopeRecordPath(loaded);
  const before = await getScope(panel);
  let record = readRecord(file);
  if (!record) {
    // Recorded before changing anything: a crash between the two steps still lets restore work.
    record = { scope: EXPORT_SCOPE, previous: before, recordedAt: new Date().toISOString(), host: hostname() };
    writeRecord(file, record);
  }
  if (before) {
    await setScope(panel, false);
    if (await getScope(panel)) throw new PanelError(`cpcmd scope:set ${EXPORT_SCOPE} false did not take effect (it still reads true)`);
  }
  return {
    scope: EXPORT_SCOPE,
    before,
    after: false,
    changed: before,
    outcome: before ? 'disabled' : 'already-disabled',
    record,
    message: before ? `${EXPORT_SCOPE} disabled (was on)` : `${EXPORT_SCOPE} is already disabled`,
  };
}

async function getScope(panel: Cpcmd): Promise<boolean> {
  return panel.bool(['scope:get', EXPORT_SCOPE]);
}

async function setScope(panel: Cpcmd, value: boolean): Promise<void> {
  await panel.call(['scope:set', EXPORT_SCOPE, String(value)]);
}

function onOff(value: boolean): string {
  return value ? 'on' : 'off';
}

export function readRecord(file: string): ScopeRecord | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PanelError(`cannot read ${file}: ${(err as Error).message}`, { file });
  }
  try {
    const parsed = JSON.parse(text) as Partial<ScopeRecord>;
    if (typeof parsed.previous !== 'boolean') throw new Error('"previous" is not a boolean');
    return parsed as ScopeRecord;
  } catch (err) {
    // Guessing the original value could leave the panel's exports off forever: stop and ask.
    throw new PanelError(`${file} is damaged (${(err as Error).message}); fix or delete it, then set ${EXPORT_SCOPE} by hand`, { file });
  }
}

/** The record survives a crash whole or not at all; it is root's alone (0600). */
function writeRecord(file: string, record: ScopeRecord): void {
  writeFileAtomic(file, JSON.stringify(record, null, 2) + '\n', { mode: 0o600, dirMode: 0o750 });
}

function removeRecord(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fsyncDir(dirname(file));
}
