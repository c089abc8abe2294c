import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { PanelError } from '../../lib/errors.js';
import { apnscpHome, findErrorBlock, locateCpcmd, requirePanel, stripNoise } from '../../lib/panel/cpcmd.js';
import { EXPORT_SCOPE, ensureScopeDisabled, scopeDisable, scopeRestore, scopeStatus } from '../../lib/panel/scope.js';
import { computeStatus } from '../../lib/report/status.js';
import { cli, CRON_PATH } from '../helpers/e2e.js';
import { exitClasses } from '../../lib/proc/exit-status.js';

// cpcmd's output as ApisCP's own docs print it, and older panels' route for the nightly exports.
// The panel is the stand-in (sandbox/fake-apiscp), run as a real subprocess.
const FAKE = join(dirname(fileURLToPath(import.meta.url)), '../../sandbox/fake-apiscp');
const CPCMD = join(FAKE, 'cpcmd');
const UPCP = join(FAKE, 'upcp');

let dir: string;
let stateFile: string;
let logFile: string;
let env: NodeJS.ProcessEnv;

function loaded(raw: Record<string, unknown> = {}): LoadedConfig {
  const config = configSchema.parse({ paths: { root: dir }, ...raw });
  return { config, file: undefined, paths: resolvePaths(config) };
}
const writeState = (state: Record<string, unknown>): void => writeFileSync(stateFile, JSON.stringify(state));
const panelState = (): { scopes: Record<string, any> } => JSON.parse(readFileSync(stateFile, 'utf8'));
const calls = (tool: string): string[][] =>
  existsSync(logFile)
    ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((c) => c.tool === tool && !c.event).map((c) => c.argv)
    : [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'panel-real-'));
  stateFile = join(dir, 'apiscp-state.json');
  logFile = join(dir, 'apiscp-calls.log');
  process.env.FAKE_APISCP_STATE = stateFile;
  process.env.FAKE_APISCP_LOG = logFile;
  // The stand-in's /etc/cron.daily is the config's cron.dir under paths.root.
  process.env.FAKE_APISCP_CRON_DIR = join(dir, 'etc/cron.daily');
  env = { ...process.env, CPCMD, UPCP };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('cpcmd output as the ApisCP docs show it', () => {
  // Copied from apiscp-docs: docs/DEBUGGING.md (an error), docs/admin/Hooks.md (OK block inside,
  // value after), docs/admin/WebApps.md (messages after the closing dashes).
  const debugging = [
    'ERROR   : test_benchmark: command does not exist',
    '----------------------------------------',
    'MESSAGE SUMMARY',
    'Reporter level: ERROR',
    '----------------------------------------',
    'ERROR: test_benchmark: command does not exist',
  ].join('\n');
  const hooks = [
    'INFO    : whoami called with arguments: [] + 8 permission level',
    '----------------------------------------',
    'MESSAGE SUMMARY',
    'Reporter level: OK',
    'INFO: whoami called with arguments: [] + 8 permission level',
    '----------------------------------------',
    'admin',
  ].join('\n');
  const webapps = [
    '----------------------------------------',
    'MESSAGE SUMMARY',
    'Reporter level: OK',
    '----------------------------------------',
    "INFO: Reset failed status on `hq.apiscp.com/'",
    '1',
  ].join('\n');

  it("the panel's own message, not the reporter level; the value without the blocks", () => {
    expect(findErrorBlock(debugging)).toMatchObject({ failed: true, level: 'ERROR', message: 'ERROR: test_benchmark: command does not exist' });
    expect(findErrorBlock(debugging)?.messages).toEqual(['ERROR: test_benchmark: command does not exist']);
    expect(findErrorBlock(hooks)).toMatchObject({ failed: false, level: 'OK' });
    expect(stripNoise(hooks)).toBe('admin');
    expect(stripNoise(webapps)).toBe('1');
    // A live ERROR line without any summary (the process died before printing it) still counts.
    expect(findErrorBlock('ERROR   : site12: account metadata is corrupt\n')).toMatchObject({ failed: true, message: 'ERROR: site12: account metadata is corrupt' });
    expect(findErrorBlock('just a value\n')).toBeUndefined();
  });

  it('the stand-in prints that layout; the PanelError quotes the message', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true } });
    const raw = await import('../../lib/proc/run.js').then(({ run }) => import('../../lib/proc/command.js').then(({ cmd }) => run(cmd(CPCMD, ['scope:get', 'no.such']), { exitClass: exitClasses({ ok: [255] }) })));
    expect(raw.stderr.split('\n').slice(0, 6)).toEqual([
      "ERROR   : Unknown admin setting `no.such'",
      '-'.repeat(40),
      'MESSAGE SUMMARY',
      'Reporter level: ERROR',
      '-'.repeat(40),
      "ERROR: Unknown admin setting `no.such'",
    ]);
    const err = await requirePanel(loaded().config, { env }).call(['scope:get', 'no.such']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PanelError);
    expect((err as Error).message).toBe("cpcmd scope:get no.such failed (exit 255): ERROR: Unknown admin setting `no.such'");
  });

  it('an OK/INFO block before the value is not part of the value', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: false }, quirks: { infoBlock: 'scope read from cache' } });
    const panel = requirePanel(loaded().config, { env });
    expect(await panel.call(['-o', 'json', 'scope:get', EXPORT_SCOPE])).toBe('false');
    expect((await scopeStatus(loaded(), { env })).enabled).toBe(false);
  });

  it('APNSCP_HOME from /etc/sysconfig/apnscp locates bin/cmd when cpcmd is not on PATH (cron)', () => {
    const home = join(dir, 'opt/apnscp');
    mkdirSync(join(home, 'bin'), { recursive: true });
    writeFileSync(join(home, 'bin/cmd'), '#!/bin/sh\n', { mode: 0o755 });
    const sysconfig = join(dir, 'sysconfig-apnscp');
    writeFileSync(sysconfig, `LOG_UPDATE=false\nAPNSCP_HOME="${home}"\n`);
    const bare = { PATH: CRON_PATH };
    expect(apnscpHome(bare, sysconfig)).toBe(home);
    expect(locateCpcmd(loaded().config, bare, sysconfig)).toBe(join(home, 'bin/cmd'));
    expect(apnscpHome({ ...bare, APNSCP_HOME: '/srv/panel/' }, sysconfig)).toBe('/srv/panel');
    expect(apnscpHome(bare, join(dir, 'missing'))).toBe('/usr/local/apnscp');
  });
});

describe('the nightly exports: scope, older panels, and whether they really stopped', () => {
  const cronFile = (): string => join(dir, 'etc/cron.daily/10backup_dbs');
  const panelCron = (): void => {
    mkdirSync(dirname(cronFile()), { recursive: true });
    writeFileSync(cronFile(), '#!/bin/sh\n', { mode: 0o755 });
  };

  it('a current panel: the scope goes off and 10backup_dbs is gone', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true } });
    panelCron();
    const change = await scopeDisable(loaded(), { env });
    expect(change).toMatchObject({ route: 'scope', outcome: 'disabled', nightly: { stopped: true } });
    expect(change.nightly.text).toMatch(/^stopped: the scope reads off and .*10backup_dbs is gone$/);
    expect(existsSync(cronFile())).toBe(false);
    expect(calls('upcp')).toEqual([]);
  });

  it('"Unknown admin setting": the pre-2022 route (cp.bootstrapper + upcp -sb apnscp/crons), recorded and undone', async () => {
    writeState({ scopes: { 'cp.bootstrapper': {} } });
    panelCron();
    const cfg = loaded();
    const change = await scopeDisable(cfg, { env });
    expect(change).toMatchObject({ route: 'bootstrapper', scope: 'cp.bootstrapper manual_database_backups', before: true, outcome: 'disabled', nightly: { stopped: true } });
    expect(panelState().scopes['cp.bootstrapper']).toEqual({ manual_database_backups: true });
    expect(calls('upcp')).toEqual([['-sb', 'apnscp/crons']]);
    expect(calls('cpcmd')).toContainEqual(['scope:set', 'cp.bootstrapper', 'manual_database_backups', 'true']);
    expect(existsSync(cronFile())).toBe(false);
    expect(JSON.parse(readFileSync(join(cfg.paths.stateDir, 'scope.json'), 'utf8'))).toMatchObject({ route: 'bootstrapper', previous: true });

    const status = await scopeStatus(cfg, { env });
    expect(status).toMatchObject({ route: 'bootstrapper', enabled: false, nightly: { stopped: true } });

    const back = await scopeRestore(cfg, { env });
    expect(back).toMatchObject({ outcome: 'restored', after: true });
    expect(panelState().scopes['cp.bootstrapper']).toEqual({ manual_database_backups: false });
    expect(calls('upcp')).toHaveLength(2);
    expect(statSync(cronFile()).mode & 0o111).not.toBe(0);
  });

  it('null or an unparsable answer is unknown: nothing is set, nothing recorded', async () => {
    for (const printed of ['null', 'maybe']) {
      writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { scopeGetPrints: printed } });
      const err = await scopeDisable(loaded(), { env }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PanelError);
      expect((err as Error).message).toMatch(/cannot tell whether the panel's nightly exports are on; nothing changed/);
      expect(panelState().scopes[EXPORT_SCOPE]).toBe(true);
      expect(existsSync(join(loaded().paths.stateDir, 'scope.json'))).toBe(false);
    }
  });

  it('the job still in place: unconfirmed with the scope, NOT stopped on an older panel (a warning every run)', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { panelCronKept: true } });
    panelCron();
    expect((await scopeDisable(loaded(), { env })).nightly).toMatchObject({ stopped: undefined, present: true, executable: true });

    rmSync(dir + '/var', { recursive: true, force: true });
    writeState({ scopes: { 'cp.bootstrapper': { manual_database_backups: false } }, quirks: { panelCronKept: true } });
    const warning = await ensureScopeDisabled(loaded(), { env });
    expect(warning).toMatchObject({ code: 'scope-reenabled', message: expect.stringMatching(/disabled it/) });
    const again = await ensureScopeDisabled(loaded(), { env });
    expect(again).toMatchObject({ code: 'panel-export-running', message: expect.stringMatching(/NOT stopped: manual_database_backups reads true but .*10backup_dbs is still in place and executable/) });
    // Not executable: run-parts skips it, so it is inert.
    chmodSync(cronFile(), 0o644);
    expect(await ensureScopeDisabled(loaded(), { env })).toBeUndefined();
  });

  it('upcp failing: the error says what to run by hand', async () => {
    writeState({ scopes: { 'cp.bootstrapper': {} }, quirks: { upcpExit: 3 } });
    const err = await scopeDisable(loaded(), { env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PanelError);
    expect((err as Error).message).toMatch(/exit(ed)? (code )?3.*re-run `upcp -sb apnscp\/crons` by hand/s);
  });

  it('the Bacula watchdog reports a scope error and goes on judging the backups (no crash)', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { failCommands: ['scope:get'] } });
    const config = join(dir, 'config.yaml');
    writeFileSync(config, JSON.stringify({ engine: 'bacula', paths: { root: dir }, panel: { enabled: true }, databases: { mysql: { enabled: false }, postgresql: { enabled: false } } }));
    const r = await cli(['--config', config, 'nightly'], { env: { PATH: CRON_PATH, CPCMD, FAKE_APISCP_STATE: stateFile, FAKE_APISCP_LOG: logFile } });
    expect(r.stderr).toMatch(/error: cannot keep the panel's nightly exports off: cpcmd -o json scope:get backups\.automatic-database-exports failed \(exit 255\): ERROR: scope:get failed/);
    // Never ran: the watchdog's own verdict (CRITICAL, exit 6) still comes out.
    expect(r.stderr).toMatch(/CRITICAL: no backup has run yet/);
    expect(r.code).toBe(6);
  });
});

describe('status says whether the nightly export stopped', () => {
  const state = { version: 1, engine: 'bacula', trigger: 'hook', startedAt: new Date().toISOString(), status: 'ok', problems: [], lastSuccessAt: new Date().toISOString() } as const;
  it('NOT stopped is a warning; stopped and unconfirmed are details', () => {
    const at = (nightly: { text: string; stopped: boolean | undefined }) =>
      computeStatus({ state, now: new Date(), maxAgeMs: 3_600_000, scope: { on: false, name: 'cp.bootstrapper manual_database_backups', nightly } });
    const bad = at({ text: 'NOT stopped: manual_database_backups reads true but /etc/cron.daily/10backup_dbs is still in place and executable', stopped: false });
    expect(bad.severity).toBe('WARNING');
    expect(bad.lines[0]).toMatch(/^WARNING: panel nightly export NOT stopped/);
    const good = at({ text: 'stopped: the scope reads off and /etc/cron.daily/10backup_dbs is gone', stopped: true });
    expect(good.severity).toBe('OK');
    expect(good.lines).toContain('panel nightly exports: off (cp.bootstrapper manual_database_backups); stopped: the scope reads off and /etc/cron.daily/10backup_dbs is gone');
    expect(at({ text: 'unconfirmed: …', stopped: undefined }).severity).toBe('OK');
  });
});
