import { readFileSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../atomic-file.js';
import type { LoadedConfig } from '../config/load.js';
import { PanelError } from '../errors.js';
import { durationMs } from '../config/schema.js';
import { warning, WarningCodes, type Warning } from '../warnings.js';
import { apnscpHome, openPanel, requirePanel, type Cpcmd, type PanelOptions } from './cpcmd.js';
import { BOOTSTRAPPER_SCOPE, BOOTSTRAPPER_VAR, EXPORT_SCOPE, locateUpcp, readExports, setExports, type ExportRoute, type ExportSetting } from './export-route.js';
import { checkNightlyExport, type NightlyExportCheck } from './nightly-export.js';

/**
 * The panel's nightly database exports run from anacron at a random time and would race our
 * backups. Turning them off (the scope, or on older panels the Bootstrapper route) makes our run
 * the only exporter; we remember what it was so `scope restore` (or uninstall) can hand the
 * panel back exactly as we found it.
 */
export { EXPORT_SCOPE } from './export-route.js';

export interface ScopeRecord {
  readonly scope: string;
  /** The value before we first disabled it: what restore puts back. */
  readonly previous: boolean;
  /** How it was switched off; absent in records written before older panels were handled. */
  readonly route?: ExportRoute;
  readonly recordedAt: string;
  readonly host: string;
}

export interface ScopeStatus {
  readonly scope: string;
  readonly enabled: boolean;
  /** Present while we hold the scope disabled. */
  readonly record: ScopeRecord | undefined;
  readonly cpcmd: string;
  readonly route: ExportRoute;
  /** Whether the panel's anacron job will really stay quiet tonight. */
  readonly nightly: NightlyExportCheck;
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
  readonly route: ExportRoute;
  readonly nightly: NightlyExportCheck;
}

export function scopeRecordPath(loaded: LoadedConfig): string {
  return join(loaded.paths.stateDir, 'scope.json');
}

export async function scopeStatus(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeStatus> {
  const panel = requirePanel(loaded.config, options);
  const setting = await readExports(panel);
  return {
    scope: scopeName(setting.route),
    enabled: setting.enabled,
    record: readRecord(scopeRecordPath(loaded)),
    cpcmd: panel.path,
    route: setting.route,
    nightly: checkNightlyExport(loaded.paths.cronDir, setting),
  };
}

/** Turn nightly exports off. The first call records the original value; later calls keep it. */
export async function scopeDisable(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeChange> {
  return disableWith(requirePanel(loaded.config, options), loaded, options);
}

/** Put back the recorded value and forget the record. Without a record there is nothing to do. */
export async function scopeRestore(loaded: LoadedConfig, options: PanelOptions = {}): Promise<ScopeChange> {
  const panel = requirePanel(loaded.config, options);
  const file = scopeRecordPath(loaded);
  const record = readRecord(file);
  const setting = await readExports(panel);
  const before = setting.enabled;
  const name = scopeName(setting.route);
  const nightly = (s: ExportSetting): NightlyExportCheck => checkNightlyExport(loaded.paths.cronDir, s);
  if (!record) {
    return { scope: name, before, after: before, changed: false, outcome: 'nothing-recorded', record, route: setting.route, nightly: nightly(setting), message: `${name} has no recorded value to restore (it is ${onOff(before)})` };
  }
  if (before !== record.previous) await setExports(panel, setting.route, record.previous, routeOptions(loaded, options));
  // Removed only after the panel took the value, so a failed restore can simply be retried.
  removeRecord(file);
  const changed = before !== record.previous;
  return {
    scope: name,
    before,
    after: record.previous,
    changed,
    outcome: changed ? 'restored' : 'already-restored',
    record,
    route: setting.route,
    nightly: nightly({ route: setting.route, enabled: record.previous }),
    message: changed ? `${name} restored to ${valueText(setting.route, record.previous)}` : `${name} is already ${valueText(setting.route, record.previous)}; record removed`,
  };
}

/**
 * For the pre-backup hook: a panel update (`upcp -b`) may switch the exports back on. Returns a
 * warning when it had to disable them, undefined when all is well or there is no panel at all.
 */
export async function ensureScopeDisabled(loaded: LoadedConfig, options: PanelOptions = {}): Promise<Warning | undefined> {
  const panel = openPanel(loaded.config, options);
  if (!panel) return undefined;
  const hadRecord = readRecord(scopeRecordPath(loaded)) !== undefined;
  const change = await disableWith(panel, loaded, options);
  if (!change.changed) {
    return change.nightly.stopped === false ? warning(WarningCodes.PANEL_EXPORT_RUNNING, `the panel's nightly export is ${change.nightly.text}`) : undefined;
  }
  return warning(
    WarningCodes.SCOPE_REENABLED,
    hadRecord
      ? `${change.scope} was on again (a panel update?); disabled it so the panel's nightly exports do not race this backup`
      : `${change.scope} was on; disabled it so the panel's nightly exports do not race this backup (scope restore puts it back)`,
  );
}

async function disableWith(panel: Cpcmd, loaded: LoadedConfig, options: PanelOptions): Promise<ScopeChange> {
  const file = scopeRecordPath(loaded);
  const setting = await readExports(panel);
  const before = setting.enabled;
  const name = scopeName(setting.route);
  let record = readRecord(file);
  if (!record) {
    // Recorded before changing anything: a crash between the two steps still lets restore work.
    record = { scope: name, previous: before, route: setting.route, recordedAt: new Date().toISOString(), host: hostname() };
    writeRecord(file, record);
  }
  if (before) await setExports(panel, setting.route, false, routeOptions(loaded, options));
  const nightly = checkNightlyExport(loaded.paths.cronDir, { route: setting.route, enabled: false });
  return {
    scope: name,
    before,
    after: false,
    changed: before,
    outcome: before ? 'disabled' : 'already-disabled',
    record,
    route: setting.route,
    nightly,
    message:
      setting.route === 'scope'
        ? before ? `${name} disabled (was on)` : `${name} is already disabled`
        : before ? `nightly exports disabled: ${name} set to true (was false)` : `nightly exports already disabled (${name} is true)`,
  };
}

/** The setting's name as the admin types it. */
export function scopeName(route: ExportRoute): string {
  return route === 'scope' ? EXPORT_SCOPE : `${BOOTSTRAPPER_SCOPE} ${BOOTSTRAPPER_VAR}`;
}

function routeOptions(loaded: LoadedConfig, options: PanelOptions): Parameters<typeof setExports>[3] {
  const env = options.env ?? process.env;
  return {
    upcp: locateUpcp(loaded.config.panel.upcp, apnscpHome(env, options.sysconfig), env),
    upcpTimeoutMs: durationMs(loaded.config.panel.upcp_timeout),
    signal: options.signal,
    log: options.log,
  };
}

/** How the admin reads the setting: the scope is on/off, manual_database_backups the opposite boolean. */
function valueText(route: ExportRoute, exportsOn: boolean): string {
  return route === 'scope' ? onOff(exportsOn) : `${!exportsOn} (nightly exports ${onOff(exportsOn)})`;
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
