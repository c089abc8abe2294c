import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, UsageError } from '../../lib/errors.js';
import { checkCronName, renderCronEntry } from '../../lib/install/cron-entry.js';
import { install, uninstall } from '../../lib/install/install.js';
import { memoryLogger } from '../../lib/log.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

const REPO = resolve(import.meta.dirname, '../..');
const FAKE_CPCMD = join(REPO, 'sandbox/fake-apiscp/cpcmd');
const REAL_TEMPLATE = join(REPO, 'config/config.example.yaml');
const SCOPE = 'backups.automatic-database-exports';
const CRON_PATH = 'PATH=/sbin:/bin:/usr/sbin:/usr/bin'; // what cron gives run-parts

const top = mkdtempSync(join(tmpdir(), 'install-test-'));
afterAll(() => rmSync(top, { recursive: true, force: true }));

// install copies the shipped example config: without it the package is broken, so fail here.
const template = REAL_TEMPLATE;
if (!existsSync(template)) throw new Error(`${template} is missing: run npm run gen:config`);

// A stand-in for the built nightly entry: it records its argv and prints nothing, like a healthy night.
const pkg = join(top, 'pkg');
const entry = join(pkg, 'dist/cron.daily/apiscp-backup.js');
const ranLog = join(pkg, 'ran.log');
mkdirSync(join(pkg, 'dist/cron.daily'), { recursive: true });
writeFileSync(entry, `require('node:fs').appendFileSync(${JSON.stringify(ranLog)}, JSON.stringify(process.argv.slice(2)) + '\\n');\n`);
// node at a path no PATH contains (like nvm's), with a space to prove the quoting.
const nodeDir = join(top, 'node bin/v20');
mkdirSync(nodeDir, { recursive: true });
const node = join(nodeDir, 'node');
symlinkSync(process.execPath, node);

let root: string;
let stateFile: string;
let cpcmdLog: string;
let n = 0;
beforeEach(() => {
  root = join(top, `root${++n}`);
  mkdirSync(root);
  stateFile = join(root, 'fake-apiscp.json');
  cpcmdLog = join(root, 'fake-apiscp.log');
  writeFileSync(stateFile, JSON.stringify({ scopes: { [SCOPE]: true } }));
  // The panel client runs cpcmd with our environment: the stand-in finds its state there.
  process.env.CPCMD = FAKE_CPCMD;
  process.env.FAKE_APISCP_STATE = stateFile;
  process.env.FAKE_APISCP_LOG = cpcmdLog;
});

const scopeValue = (): unknown => (JSON.parse(readFileSync(stateFile, 'utf8')) as { scopes: Record<string, unknown> }).scopes[SCOPE];
const scopeSets = (): string[][] =>
  existsSync(cpcmdLog)
    ? readFileSync(cpcmdLog, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { argv: string[] }).argv).filter((a) => a.includes('scope:set'))
    : [];
const opts = (over: Partial<Parameters<typeof install>[0]> = {}): Parameters<typeof install>[0] => ({ root, node, entry, template, log: memoryLogger(), ...over });
const cronDir = (): string => join(root, 'etc/cron.daily');
const configFile = (): string => join(root, 'etc/apiscp-backup/config.yaml');
const noPanelEnv = { PATH: '/usr/bin:/bin' };

function listTree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

describe('renderCronEntry', () => {
  it('is a silent POSIX sh script that execs node by absolute path', async () => {
    const text = renderCronEntry({ node: '/usr/bin/node', entry: '/opt/a b/dist/cron.daily/apiscp-backup.js', config: '/etc/apiscp-backup/config.yaml' });
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
    expect(text.trimEnd().split('\n').at(-1)).toBe("exec /usr/bin/node '/opt/a b/dist/cron.daily/apiscp-backup.js'"); // default config: no --config
    expect(text).not.toMatch(/^\s*(echo|printf)/m);
    const other = renderCronEntry({ node: '/usr/bin/node', entry: '/e.js', config: '/srv/conf.yaml' });
    expect(other).toMatch(/exec \/usr\/bin\/node \/e\.js --config \/srv\/conf\.yaml\n$/);
    const file = join(top, 'syntax.sh');
    writeFileSync(file, text);
    await run(cmd('sh', ['-n', file])); // parses as POSIX sh
  });

  it('refuses relative paths and dotted names', () => {
    expect(() => renderCronEntry({ node: 'node', entry: '/e.js' })).toThrow(/absolute path/);
    expect(() => renderCronEntry({ node: '/usr/bin/node', entry: 'dist/e.js' })).toThrow(/absolute path/);
    expect(() => checkCronName('apiscp-backup.sh')).toThrow(UsageError);
    expect(() => checkCronName('apiscp_backup-2')).not.toThrow();
  });
});

describe('install', () => {
  it('writes config, an executable dot-free entry, disables the scope and records the old value', async () => {
    const result = await install(opts({ engine: 'restic' }));
    expect(result.changed).toBe(true);
    expect(result.text).toMatch(/^installed\n/);

    const cronFile = join(cronDir(), 'apiscp-backup');
    expect(readdirSync(cronDir())).toEqual(['apiscp-backup']); // no temp file left behind
    expect(statSync(cronFile).mode & 0o777).toBe(0o755);
    const script = readFileSync(cronFile, 'utf8');
    expect(script.startsWith('#!/bin/sh\n')).toBe(true);
    expect(script).toContain(`exec '${node}' ${entry} --config ${configFile()}`);

    const config = readFileSync(configFile(), 'utf8');
    expect(config).toMatch(/^engine: restic$/m);
    expect(config).toContain(`root: ${root}`); // the sandbox's runs stay under --root
    expect(statSync(configFile()).mode & 0o777).toBe(0o640);

    expect(scopeValue()).toBe(false);
    expect(scopeSets()).toEqual([['scope:set', SCOPE, 'false']]);
    const record = JSON.parse(readFileSync(join(root, 'var/lib/apiscp-backup/scope.json'), 'utf8')) as { previous: boolean };
    expect(record.previous).toBe(true);

    expect(result.nextSteps.join('\n')).toMatch(/restic\.repository.*restic init/s);
  });

  it("Debian's run-parts accepts and runs the entry under cron's PATH; a dotted name is skipped", async () => {
    await install(opts());
    const dotted = join(cronDir(), 'apiscp-backup.sh');
    writeFileSync(dotted, '#!/bin/sh\necho dotted ran\n');
    chmodSync(dotted, 0o755);

    const listed = await run(cmd('run-parts', ['--test', cronDir()]));
    expect(listed.stdout.trim().split('\n')).toEqual([join(cronDir(), 'apiscp-backup')]);

    rmSync(ranLog, { force: true });
    const ran = await run(cmd('env', ['-i', CRON_PATH, 'run-parts', cronDir()]));
    expect(ran.stdout + ran.stderr).toBe(''); // a healthy night says nothing, so cron mails nothing
    expect(readFileSync(ranLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as string[])).toEqual([['--config', configFile()]]);
  });

  it('a second install changes nothing and says so', async () => {
    await install(opts());
    const cronFile = join(cronDir(), 'apiscp-backup');
    const before = { entry: statSync(cronFile).mtimeMs, config: readFileSync(configFile(), 'utf8'), sets: scopeSets().length };
    const again = await install(opts());
    expect(again.changed).toBe(false);
    expect(again.text).toMatch(/^already installed: nothing changed\n/);
    expect(again.text).toMatch(/cron entry .*: already installed/);
    expect(again.nextSteps).toEqual([]);
    expect(statSync(cronFile).mtimeMs).toBe(before.entry);
    expect(readFileSync(configFile(), 'utf8')).toBe(before.config);
    expect(scopeSets()).toHaveLength(before.sets);
  });

  it('never overwrites an existing config; --engine is then only a note', async () => {
    mkdirSync(join(root, 'etc/apiscp-backup'), { recursive: true });
    writeFileSync(configFile(), `# mine\nengine: borg\npaths:\n  root: ${root}\n`);
    const result = await install(opts({ engine: 'duplicity' }));
    expect(readFileSync(configFile(), 'utf8')).toBe(`# mine\nengine: borg\npaths:\n  root: ${root}\n`);
    expect(result.text).toMatch(/config .* exists: kept/);
    expect(result.text).toMatch(/--engine duplicity was not applied: .* engine: borg/);
    expect(result.nextSteps.join('\n')).toMatch(/borg init/);
  });

  it('dry run lists the actions and writes nothing, not even the scope', async () => {
    const before = listTree(root);
    const result = await install(opts({ dryRun: true, engine: 'bacula' }));
    expect(result.text).toMatch(/^dry run: nothing was changed\n/);
    expect(result.actions.filter((a) => a.startsWith('would '))).toHaveLength(4); // config, entry, wrapper, scope
    expect(result.actions).toContainEqual(expect.stringMatching(/^would install wrapper .*\/usr\/local\/sbin\/apiscp-backup \(0755\)/));
    expect(listTree(root).filter((f) => !f.startsWith('fake-apiscp'))).toEqual(before.filter((f) => !f.startsWith('fake-apiscp')));
    expect(scopeValue()).toBe(true);
    expect(scopeSets()).toEqual([]);
  });

  it('without a panel the scope is skipped with a note', async () => {
    const result = await install(opts({ env: noPanelEnv }));
    expect(result.text).toMatch(/no ApisCP panel found \(cpcmd\): scope .* left alone/);
    expect(existsSync(join(cronDir(), 'apiscp-backup'))).toBe(true);
    expect(scopeSets()).toEqual([]);
  });

  it('refuses a dotted cron.name, a foreign file at the entry path, a missing entry or node', async () => {
    mkdirSync(join(root, 'etc/apiscp-backup'), { recursive: true });
    writeFileSync(configFile(), 'cron:\n  name: apiscp-backup.sh\n');
    await expect(install(opts())).rejects.toThrow(ConfigError);
    await expect(install(opts())).rejects.toThrow(/may not contain dots/);
    writeFileSync(configFile(), '');
    mkdirSync(cronDir(), { recursive: true });
    writeFileSync(join(cronDir(), 'apiscp-backup'), '#!/bin/sh\n# the admin\'s own script\n');
    await expect(install(opts())).rejects.toThrow(/not written by apiscp-backup/);
    await expect(install(opts({ entry: join(pkg, 'missing.js') }))).rejects.toThrow(/npm run build/);
    await expect(install(opts({ node: join(top, 'no-node') }))).rejects.toThrow(/not an executable/);
    await expect(install(opts({ node: nodeDir }))).rejects.toThrow(/not an executable/); // a directory is X_OK too
  });

  it('warns that an nvm node can disappear', async () => {
    const nvm = join(top, `.nvm-root${n}/.nvm/versions/node/v20.0.0/bin`);
    mkdirSync(nvm, { recursive: true });
    symlinkSync(process.execPath, join(nvm, 'node'));
    const result = await install(opts({ node: join(nvm, 'node'), env: noPanelEnv }));
    expect(result.text).toMatch(/note: node .* belongs to nvm/);
  });
});

describe('uninstall', () => {
  it('removes the entry and restores the scope; keeps config, state and dumps', async () => {
    await install(opts());
    mkdirSync(join(root, 'var/backup/apiscp-backup/run1'), { recursive: true });
    const result = await uninstall({ root, log: memoryLogger() });
    expect(existsSync(join(cronDir(), 'apiscp-backup'))).toBe(false);
    expect(scopeValue()).toBe(true);
    expect(result.text).toMatch(/restored to on/);
    expect(existsSync(configFile())).toBe(true);
    expect(existsSync(join(root, 'var/backup/apiscp-backup/run1'))).toBe(true);
    // Nothing left to do the second time.
    const again = await uninstall({ root, log: memoryLogger() });
    expect(again.text).toMatch(/not installed/);
    expect(again.text).toMatch(/nothing recorded to restore|no recorded value/);
  });

  it('leaves the scope off when it was already off before install', async () => {
    writeFileSync(stateFile, JSON.stringify({ scopes: { [SCOPE]: false } }));
    await install(opts());
    await uninstall({ root, log: memoryLogger() });
    expect(scopeValue()).toBe(false);
    expect(scopeSets()).toEqual([]);
  });

  it('--purge also removes config, state and dumps; an admin script is left alone', async () => {
    await install(opts());
    mkdirSync(join(root, 'var/backup/apiscp-backup/run1'), { recursive: true });
    const dry = await uninstall({ root, purge: true, dryRun: true, log: memoryLogger() });
    expect(dry.actions.filter((a) => a.startsWith('would remove'))).toHaveLength(5); // entry, wrapper, state, dumps, config
    expect(existsSync(configFile())).toBe(true);
    expect(scopeValue()).toBe(false);

    await uninstall({ root, purge: true, log: memoryLogger() });
    expect(scopeValue()).toBe(true); // restored before the record in the state dir was purged
    for (const p of ['etc/apiscp-backup', 'var/lib/apiscp-backup', 'var/backup/apiscp-backup', 'etc/cron.daily/apiscp-backup', 'usr/local/sbin/apiscp-backup']) {
      expect(existsSync(join(root, p)), p).toBe(false);
    }

    writeFileSync(join(cronDir(), 'apiscp-backup'), '#!/bin/sh\n');
    const foreign = await uninstall({ root, log: memoryLogger() });
    expect(foreign.text).toMatch(/not written by apiscp-backup: left alone/);
    expect(existsSync(join(cronDir(), 'apiscp-backup'))).toBe(true);
  });
});
