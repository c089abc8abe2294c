import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../lib/config/load.js';
import { underRoot, resolvePaths } from '../../lib/config/paths.js';
import { configReference, sampleConfig } from '../../lib/config/sample.js';
import { durationMs } from '../../lib/config/schema.js';
import { redactConfig } from '../../lib/config/redact.js';
import { ConfigError } from '../../lib/errors.js';
import { decodeName, encodeName, newRunId, RUN_ID } from '../../lib/dumps/layout.js';
import { nameFilter } from '../../lib/plan/name-filter.js';

function configError(text: string): ConfigError {
  try {
    parseConfigText(text, '/etc/apiscp-backup/config.yaml');
  } catch (err) {
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('an empty file is valid and every key has its documented default', () => {
    const c = parseConfigText('', undefined);
    expect(c.engine).toBe('none');
    expect(c.dumps).toMatchObject({ dir: '/var/backup/apiscp-backup', keep: 3, compression: 'auto', concurrency: 2 });
    expect(c.databases.method).toBe('native');
    expect(c.databases.mysql).toMatchObject({ enabled: 'auto', user: 'root', include: ['*'], exclude: [] });
    expect(c.databases.postgresql).toMatchObject({ enabled: 'auto', user: 'postgres' });
    expect(c.panel).toMatchObject({ cpcmd: 'auto', enabled: 'auto' });
  });

  it('an unknown key names the key, the line and a suggestion', () => {
    const e = configError('engine: none\ndumps:\n  dir: /x\n  kep: 4\n');
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.line).toBe(4);
    expect(e.key).toBe('dumps.kep');
    expect(e.message).toBe("/etc/apiscp-backup/config.yaml:4: dumps.kep: unknown key (did you mean 'keep'?)");
    expect(e.exitCode).toBe(2);
  });

  it('a wrong type or value names the key and its line', () => {
    const e = configError('dumps:\n  keep: many\n');
    expect(e.message).toMatch(/config\.yaml:2: dumps\.keep: Expected number/);
    const e2 = configError('engine: tarsnap\n');
    expect(e2.message).toMatch(/:1: engine: Invalid enum value.*'duplicity'/);
    const e3 = configError('cron:\n  name: apiscp-backup.sh\n');
    expect(e3.message).toMatch(/:2: cron\.name: cron\.daily names may not contain dots/);
  });

  it('malformed YAML gives the line of the syntax error', () => {
    const e = configError('dumps:\n  dir: /x\n   keep: [1,\n');
    expect(e.message).toMatch(/config\.yaml:\d+: invalid YAML/);
    expect(e.line).toBeGreaterThanOrEqual(2);
  });

  it('durations accept seconds and unit suffixes', () => {
    expect(durationMs(90)).toBe(90_000);
    expect(durationMs('10m')).toBe(600_000);
    expect(durationMs('1.5h')).toBe(5_400_000);
    expect(durationMs('2d')).toBe(172_800_000);
    expect(configError('lock:\n  wait: soon\n').message).toMatch(/:2: lock\.wait/);
  });

  it('system paths move under paths.root, paths already under it stay', () => {
    expect(underRoot('/', '/var/x')).toBe('/var/x');
    expect(underRoot('/tmp/r', '/var/x')).toBe('/tmp/r/var/x');
    expect(underRoot('/tmp/r', '/tmp/r/var/x')).toBe('/tmp/r/var/x');
    const p = resolvePaths(parseConfigText('paths:\n  root: /sandbox\n', undefined));
    expect(p).toMatchObject({ dumpsDir: '/sandbox/var/backup/apiscp-backup', lockPath: '/sandbox/run/apiscp-backup.lock', cronDir: '/sandbox/etc/cron.daily' });
    expect(p.include[0]).toBe('/sandbox/home/virtual/site*/shadow');
    expect(p.statusFile).toBe('/sandbox/var/lib/apiscp-backup/status.json');
  });

  it('status.json follows state.dir unless monitor.status_file says otherwise', () => {
    expect(resolvePaths(parseConfigText('state:\n  dir: /srv/state\n', undefined)).statusFile).toBe('/srv/state/status.json');
    expect(resolvePaths(parseConfigText('state:\n  dir: /srv/state\nmonitor:\n  status_file: /run/s.json\n', undefined)).statusFile).toBe('/run/s.json');
  });

  it('config print redacts secret values but keeps secret file paths visible', () => {
    const c = parseConfigText('duplicity:\n  target: sftp://user:hunter2@host/path\n  passphrase_file: /etc/p\n', undefined);
    const shown = JSON.stringify(redactConfig(c));
    expect(shown).not.toContain('hunter2');
    expect(shown).toContain('sftp://user:***@host/path');
    expect(shown).toContain('/etc/p');
  });

  it('the shipped example config and the docs/configuration.md reference are generated from the schema', () => {
    expect(readFileSync('config/config.example.yaml', 'utf8')).toBe(sampleConfig());
    expect(parseConfigText(sampleConfig(), 'example')).toEqual(parseConfigText('', undefined));
    const reference = readFileSync('docs/configuration.md', 'utf8');
    for (const row of configReference()) expect(reference).toContain(row);
  });
});

describe('dump layout', () => {
  it('file names keep safe characters and encode everything else reversibly', () => {
    for (const name of ['shop_db', 'weird db', "it's", 'a`b', '$(touch /tmp/x)', 'dé_ü_日本', '-leading', '.hidden', '../up', 'a/b', '%25']) {
      const enc = encodeName(name);
      expect(enc).toMatch(/^[A-Za-z0-9_%-][A-Za-z0-9_.%-]*$/);
      expect(decodeName(enc)).toBe(name);
    }
    expect(encodeName('weird db')).toBe('weird%20db');
    expect(encodeName('../up')).toBe('%2E.%2Fup');
  });

  it('run ids sort by time', () => {
    const a = newRunId(new Date('2026-11-26T03:05:12.345Z'));
    expect(a).toBe('20261126T030512Z');
    expect(RUN_ID.test(a)).toBe(true);
    expect(newRunId(new Date('2026-11-27T00:00:00Z')) > a).toBe(true);
  });

  it('include/exclude globs match whole database names', () => {
    const f = nameFilter(['site*', 'analytics'], ['*_tmp', 'site9_?']);
    expect(['site1_wp', 'analytics', 'site1_tmp', 'site9_x', 'site9_xy', 'other'].filter(f)).toEqual(['site1_wp', 'analytics', 'site9_xy']);
    expect(nameFilter(['a[bc]d'], [])('acd')).toBe(true);
    expect(nameFilter(['*'], [])('with/slash')).toBe(true);
  });
});
