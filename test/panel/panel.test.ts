import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { runPanelExports } from '../../lib/dumps/apnscp.js';
import { CommandError, PanelError } from '../../lib/errors.js';
import { ExitCode } from '../../lib/exit-codes.js';
import { memoryLogger } from '../../lib/log.js';
import { Cpcmd, locateCpcmd, openPanel, parseBoolean, requirePanel } from '../../lib/panel/cpcmd.js';
import { EXPORT_SCOPE, ensureScopeDisabled, scopeDisable, scopeRecordPath, scopeRestore, scopeStatus } from '../../lib/panel/scope.js';
import { mapDatabasesToSites } from '../../lib/panel/sites.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { isRunning } from '../helpers/processes.js';

// The only stand-in in the suite: ApisCP itself cannot be installed, so these tests run the
// fake cpcmd and backup_dbs.php as real subprocesses through lib/proc.
const FAKE = join(dirname(fileURLToPath(import.meta.url)), '../../sandbox/fake-apiscp');
const CPCMD = join(FAKE, 'cpcmd');

let dir: string;
let stateFile: string;
let logFile: string;
let env: NodeJS.ProcessEnv;

interface FakeState {
  scopes?: Record<string, unknown>;
  sites?: Record<string, { domain: string; active?: boolean; mysql?: string[]; pgsql?: string[]; prefix?: string; broken?: boolean }>;
  quirks?: Record<string, unknown>;
}

function writeState(state: FakeState): void {
  writeFileSync(stateFile, JSON.stringify(state));
}

function fakeState(): FakeState {
  return JSON.parse(readFileSync(stateFile, 'utf8')) as FakeState;
}

function calls(tool = 'cpcmd'): { argv: string[]; pid: number; childPid?: number; event?: string }[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { tool: string; argv: string[]; pid: number })
    .filter((c) => c.tool === tool);
}

function loaded(raw: Record<string, unknown> = {}): LoadedConfig {
  const config = configSchema.parse({ state: { dir: join(dir, 'state') }, ...raw });
  return { config, file: undefined, paths: resolvePaths(config) };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'panel-test-'));
  stateFile = join(dir, 'apiscp-state.json');
  logFile = join(dir, 'apiscp-calls.log');
  // The child inherits process.env (each vitest file runs in its own worker).
  process.env.FAKE_APISCP_STATE = stateFile;
  process.env.FAKE_APISCP_LOG = logFile;
  process.env.FAKE_APISCP_HOME = join(dir, 'home');
  env = { ...process.env, CPCMD: CPCMD };
  writeState({ scopes: { [EXPORT_SCOPE]: true, 'cp.debug': false } });
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('scope status/disable/restore', () => {
  it('round trip: disable twice keeps the original value, restore twice is a no-op', async () => {
    const cfg = loaded();
    expect(await scopeStatus(cfg, { env })).toMatchObject({ enabled: true, record: undefined, cpcmd: CPCMD });

    const first = await scopeDisable(cfg, { env });
    expect(first).toMatchObject({ outcome: 'disabled', changed: true, before: true, after: false });
    expect(fakeState().scopes?.[EXPORT_SCOPE]).toBe(false);
    const record = scopeRecordPath(cfg);
    expect(statSync(record).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(record, 'utf8'))).toMatchObject({ scope: EXPORT_SCOPE, previous: true });

    const second = await scopeDisable(cfg, { env });
    expect(second).toMatchObject({ outcome: 'already-disabled', changed: false, record: { previous: true } });
    expect(second.message).toMatch(/already disabled/);
    expect(JSON.parse(readFileSync(record, 'utf8')).previous).toBe(true);

    const restored = await scopeRestore(cfg, { env });
    expect(restored).toMatchObject({ outcome: 'restored', changed: true, before: false, after: true });
    expect(fakeState().scopes?.[EXPORT_SCOPE]).toBe(true);
    expect(existsSync(record)).toBe(false);

    const again = await scopeRestore(cfg, { env });
    expect(again).toMatchObject({ outcome: 'nothing-recorded', changed: false });
    expect(fakeState().scopes?.[EXPORT_SCOPE]).toBe(true);

    // Values are read with -o json and set with the literal true/false cpcmd parses as booleans.
    const argvs = calls().map((c) => c.argv);
    expect(argvs).toContainEqual(['-o', 'json', 'scope:get', EXPORT_SCOPE]);
    expect(argvs).toContainEqual(['scope:set', EXPORT_SCOPE, 'false']);
    expect(argvs).toContainEqual(['scope:set', EXPORT_SCOPE, 'true']);
  });

  it('an originally disabled scope stays disabled after restore; ensureScopeDisabled catches a panel update', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: false } });
    const cfg = loaded();
    expect(await scopeDisable(cfg, { env })).toMatchObject({ outcome: 'already-disabled', record: { previous: false } });
    expect(await ensureScopeDisabled(cfg, { env })).toBeUndefined();

    writeState({ scopes: { [EXPORT_SCOPE]: true } }); // upcp -b rewrote the setting
    const warning = await ensureScopeDisabled(cfg, { env });
    expect(warning).toMatchObject({ code: 'scope-reenabled', message: expect.stringMatching(/on again/) });
    expect(fakeState().scopes?.[EXPORT_SCOPE]).toBe(false);

    expect(await scopeRestore(cfg, { env })).toMatchObject({ outcome: 'already-restored', after: false });
    expect(fakeState().scopes?.[EXPORT_SCOPE]).toBe(false);
  });

  it.each([
    ['1', true],
    ['', false],
    ['true', true],
    ['0', false],
    ['false', false],
  ])('parses the PHP-style scope value %j', async (printed, expected) => {
    writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { scopeGetPrints: printed } });
    expect((await scopeStatus(loaded(), { env })).enabled).toBe(expected);
  });

  it('reads plain (non-JSON) output and values behind a PHP warning banner', async () => {
    const panel = requirePanel(loaded().config, { env });
    expect(await panel.call(['scope:get', EXPORT_SCOPE])).toBe('1');
    expect(await panel.call(['scope:get', 'cp.debug'])).toBe('');
    expect(parseBoolean(await panel.call(['scope:get', 'cp.debug']))).toBe(false);

    writeState({ scopes: { [EXPORT_SCOPE]: true }, sites: { site1: { domain: 'a.test' } }, quirks: { warningBanner: true } });
    expect(await panel.json(['admin:collect'])).toEqual({ site1: { domain: 'a.test', active: true } });
    expect(await panel.bool(['scope:get', EXPORT_SCOPE])).toBe(true);
  });
});

describe('cpcmd failures', () => {
  it('turns the MESSAGE SUMMARY block into a PanelError naming the command and the ERROR line', async () => {
    const panel = requirePanel(loaded().config, { env });
    const err = await panel.bool(['scope:get', 'no.such-scope']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PanelError);
    const e = err as PanelError;
    expect(e.message).toContain('scope:get no.such-scope');
    expect(e.message).toContain("ERROR: Unknown admin setting `no.such-scope'");
    expect(e.exitCode).toBe(ExitCode.PANEL);
    expect(e.context).toMatchObject({ exitCode: 255 });
  });

  it('detects the error block on stdout even when cpcmd exits 0', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { errorExitCode: 0, errorStream: 'stdout', failCommands: ['scope:set'] } });
    const err = await scopeDisable(loaded(), { env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PanelError);
    expect((err as Error).message).toMatch(/scope:set backups\.automatic-database-exports false failed \(exit 0\): ERROR: scope:set failed/);
  });

  it('a cpcmd that hangs is killed at panel.timeout', async () => {
    writeState({ scopes: { [EXPORT_SCOPE]: true }, quirks: { delayMs: 20_000 } });
    const started = Date.now();
    const err = await scopeStatus(loaded({ panel: { timeout: '300ms' } }), { env }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PanelError);
    expect((err as Error).message).toMatch(/scope:get .*timed out/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('the stand-in refuses to run as a non-root user, like the admin-only panel', async () => {
    const err = await run(cmd(CPCMD, ['scope:list'], { uid: 65534, gid: 65534 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderrTail).toContain('ERROR: cpcmd must be run as root');
  });

  it('a missing binary is a clear PanelError', async () => {
    const missing = join(dir, 'no-such-cpcmd');
    expect(() => locateCpcmd(loaded({ panel: { cpcmd: missing } }).config, env)).toThrow(new RegExp(`cpcmd not found or not executable: ${missing} \\(panel\\.cpcmd\\)`));
    await expect(scopeStatus(loaded(), { env: { ...env, CPCMD: missing } })).rejects.toThrow(/\$CPCMD/);
    const bare = { PATH: join(dir, 'empty-path') };
    expect(() => openPanel(loaded({ panel: { enabled: true } }).config, { env: bare })).toThrow(/panel\.enabled is true but cpcmd was not found/);
  });

  it('without a panel the scope commands say so and the pre-backup check does nothing', async () => {
    await expect(scopeStatus(loaded({ panel: { enabled: false } }), { env })).rejects.toThrow(/no ApisCP panel on this host: panel\.enabled is false/);
    const bare = { PATH: join(dir, 'empty-path') };
    await expect(scopeDisable(loaded(), { env: bare })).rejects.toThrow(/no ApisCP panel on this host/);
    await expect(scopeRestore(loaded(), { env: bare })).rejects.toBeInstanceOf(PanelError);
    expect(await ensureScopeDisabled(loaded(), { env: bare })).toBeUndefined();
    expect(calls()).toHaveLength(0);
  });
});

describe('mapDatabasesToSites', () => {
  const sites = {
    site1: { domain: 'one.test', mysql: ['one_wp', 'one_shop'], pgsql: [], prefix: 'one_' },
    site2: { domain: 'two.test', mysql: ['two_x'], pgsql: ['two_pg'], broken: true },
    site10: { domain: 'ten.test', active: false, mysql: ['ten_blog'], pgsql: ['ten_pg'] },
  };

  it('maps every database to its site; a failing site is skipped with a warning', async () => {
    writeState({ sites });
    const log = memoryLogger();
    const panel = requirePanel(loaded().config, { env, log });
    const map = await mapDatabasesToSites(panel, { concurrency: 2, log });
    expect(Object.fromEntries(map.mysql)).toEqual({ one_wp: 'site1', one_shop: 'site1', ten_blog: 'site10' });
    expect(Object.fromEntries(map.postgresql)).toEqual({ ten_pg: 'site10' });
    expect([...map.sites.keys()]).toEqual(['site1', 'site2', 'site10']);
    expect(map.failedSites).toEqual(['site2']);
    expect(log.problems.some((p) => /site2.*_server/.test(p))).toBe(true);
    expect(calls().map((c) => c.argv)).toContainEqual(['-d', 'site10', '-o', 'json', 'pgsql:list-databases']);
  });

  it('falls back to admin:get-domains (numeric ids) when admin:collect fails', async () => {
    writeState({ sites: { site1: sites.site1, site3: { domain: 'three.test', mysql: ['three_db'] } }, quirks: { failCommands: ['admin:collect'] } });
    const log = memoryLogger();
    const map = await mapDatabasesToSites(new Cpcmd(CPCMD), { concurrency: 4, log });
    expect([...map.sites]).toEqual([
      ['site1', { domain: 'one.test', active: undefined }],
      ['site3', { domain: 'three.test', active: undefined }],
    ]);
    expect(map.mysql.get('three_db')).toBe('site3');
    expect(map.failedSites).toEqual([]);
  });
});

describe('runPanelExports (backup_dbs.php stand-in)', () => {
  const exportConfig = (raw: Record<string, unknown> = {}): LoadedConfig => loaded({ databases: { apnscp: { php: join(FAKE, 'apnscp_php'), script: join(FAKE, 'backup_dbs.php'), ...raw } } });

  it('writes each site database export and reports ok', async () => {
    writeState({ sites: { site1: { domain: 'a.test', mysql: ['a_wp'], pgsql: ['a_pg'] } } });
    const { entry, error } = await runPanelExports(exportConfig(), { log: memoryLogger() });
    expect(error).toBeUndefined();
    expect(entry).toMatchObject({ kind: 'apnscp', object: 'panel-export', site: '_server', status: 'ok', format: 'panel' });
    const done = calls('backup_dbs.php').find((c) => c.event === 'done') as unknown as { written: string[]; argv: string[] };
    expect(done.argv).toEqual(['--force']);
    expect(done.written.map((f) => f.slice(dir.length))).toEqual([
      expect.stringMatching(/^\/home\/site1\/shadow\/home\/admin\/mysql_backups\/a_wp-\d{8}\.sql$/),
      expect.stringMatching(/^\/home\/site1\/shadow\/home\/admin\/pgsql_backups\/a_pg-\d{8}\.sql$/),
    ]);
    for (const f of done.written) expect(existsSync(f)).toBe(true);
  });

  it('a non-zero exit is a dump failure with command, exit code and stderr tail', async () => {
    writeState({ sites: {}, quirks: { backupDbsExit: 3 } });
    const { entry, error } = await runPanelExports(exportConfig());
    expect(error).toBeInstanceOf(CommandError);
    expect(error?.exitCode).toBe(ExitCode.DUMP_FAILED);
    expect(entry.status).toBe('failed');
    expect(entry.error).toMatchObject({ exitCode: 3, command: expect.stringContaining('backup_dbs.php --force') });
    expect(entry.error?.stderrTail).toContain('PHP Fatal error');
  });

  it('a missing script is reported by its setting', async () => {
    const { entry } = await runPanelExports(exportConfig({ script: join(dir, 'nope.php') }));
    expect(entry.status).toBe('failed');
    expect(entry.error?.message).toMatch(/does not exist \(databases\.apnscp\.script\)/);
  });

  it('a timeout kills the whole process tree', async () => {
    writeState({ sites: {}, quirks: { backupDbsHangMs: 60_000 } });
    const started = Date.now();
    const { entry, error } = await runPanelExports(exportConfig({ timeout: '1s' }));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(error?.timedOut).toBe(true);
    expect(entry.error?.message).toMatch(/timed out/);
    const hang = calls('backup_dbs.php').find((c) => c.event === 'hang');
    expect(hang?.childPid).toBeGreaterThan(0);
    for (const pid of [hang!.pid, hang!.childPid!]) await expect.poll(() => isRunning(pid), { timeout: 8000 }).toBe(false);
  });
});
