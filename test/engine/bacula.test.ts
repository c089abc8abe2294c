import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { baculaEngine, baculaHookCommands, renderBaculaConfig, type BaculaConfigOptions } from '../../lib/engine/bacula.js';
import { pathGlobSource } from '../../lib/plan/glob.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildJob, prepareCatalog, startBacula, stockDirectorConfig, testDirectorConfig, type BaculaHarness } from '../harness/bacula.js';

// Stands where node goes in the fragment; the "entry" argument is its state dir (see the script).
const STAND_IN = fileURLToPath(new URL('../fixtures/bacula-hook-stand-in.sh', import.meta.url));
// A space in every path on purpose: the fragment's quoting is what is under test.
const root = mkdtempSync(join(tmpdir(), 'apiscp bacula '));
const home = join(root, 'home', 'virtual');
const state = join(root, 'hook state');
const dumps = join(root, 'dumps');

afterAll(() => rmSync(root, { recursive: true, force: true }));

function fragment(extra: Partial<BaculaConfigOptions> = {}): string {
  return renderBaculaConfig({
    client: 'apiscp-fd', fileset: 'ApisCP', job: 'ApisCP', jobdefs: 'DefaultJob', node: STAND_IN, entry: state,
    sources: [`${home}/site*/shadow`, `${home}/site*/info`, dumps],
    excludes: [`${home}/site*/shadow/var/lib`, `${home}/site*/fst`, `${dumps}/*.inprogress`, `${home}/FILESYSTEMTEMPLATE`],
    configFile: join(root, 'etc', 'apiscp backup.yaml'),
    ...extra,
  });
}

describe('renderBaculaConfig', () => {
  test('hooks: absolute node + entry by execvp, job codes for the client, "%e" one word', () => {
    const c = baculaHookCommands({ node: '/usr/bin/node', entry: '/opt/my apps/apiscp-backup.js', configFile: '/etc/a%b.yaml' });
    expect(c.before).toBe('/usr/bin/node "/opt/my apps/apiscp-backup.js" --config /etc/a%%b.yaml hook pre-backup --engine bacula --level %l --jobid %i --job %n');
    expect(c.after).toBe('/usr/bin/node "/opt/my apps/apiscp-backup.js" --config /etc/a%%b.yaml hook post-backup --engine bacula --status "%e" --jobid %i --job %n');
    expect(() => baculaHookCommands({ node: 'node', entry: '/x.js' })).toThrow(/absolute/);
    const text = renderBaculaConfig({ client: 'c-fd', fileset: 'F', job: 'J', jobdefs: 'Incremental', node: '/usr/bin/node', entry: '/e.js', sources: ['/d'], excludes: [], pool: 'P' });
    expect(text).toContain('Command = "/usr/bin/node /e.js hook post-backup --engine bacula --status \\"%e\\" --jobid %i --job %n"');
    expect(text).toMatch(/JobDefs = "Incremental"\n {2}Client = "c-fd"\n {2}FileSet = "F"\n {2}Pool = "P"/);
    expect(text).toMatch(/aclsupport = yes\n\s+xattrsupport = yes/);
  });

  test('site* means siteN only; other globs stay inside one path segment', () => {
    const re = new RegExp(pathGlobSource('/home/virtual/site*/shadow'));
    expect(['/home/virtual/site1/shadow', '/home/virtual/site42/shadow'].every((p) => re.test(p))).toBe(true);
    expect(['/home/virtual/siteold/shadow', '/home/virtual/site/shadow', '/home/virtual/site1/x/shadow'].some((p) => re.test(p))).toBe(false);
    expect(new RegExp(pathGlobSource('/var/log/mailer_table*')).test('/var/log/mailer_table-20240101.gz')).toBe(true);
    expect(fragment()).toContain('File = "\\\\|/bin/sh -c \'for p in');
    expect(fragment({ fileList: 'cli' })).toContain(`File = "\\\\|${STAND_IN} \\"${state}\\" --config \\"${join(root, 'etc', 'apiscp backup.yaml')}\\" paths"`);
  });

  test('the engine is driven by the director', async () => {
    expect([baculaEngine.name, baculaEngine.keepsAcls, baculaEngine.drivesBackup]).toEqual(['bacula', true, false]);
    await expect(baculaEngine.backup({} as never)).rejects.toThrow(/director/);
  });
});

describe('bacula-dir -t on an admin config with the fragment appended', () => {
  const dir = join(root, 'config-check');
  // -t also opens the catalog: the sqlite file has to exist.
  beforeAll(async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'query.sql'), '');
    await prepareCatalog(dir);
  });
  const stock = (): string => {
    return stockDirectorConfig({
      directorName: 'x-dir', dirPort: 9101, consolePassword: 'a', workDir: dir, clientName: 'apiscp-fd', fdPort: 9102, fdPassword: 'b',
      sdPort: 9103, sdPassword: 'c', logFile: join(dir, 'log'), dataDir: dir,
    });
  };
  const check = async (text: string): Promise<{ ok: boolean; output: string }> => {
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `dir-${Math.random().toString(36).slice(2)}.conf`);
    writeFileSync(file, text);
    return testDirectorConfig(file);
  };

  test("Debian's own /etc/bacula/bacula-dir.conf", async () => {
    const debian = readFileSync('/etc/bacula/bacula-dir.conf', 'utf8');
    const client = /Client\s*\{\s*Name\s*=\s*"?([^"\s]+)/.exec(debian)?.[1];
    expect(client).toBeTruthy();
    expect(await check(`${debian}\n${fragment({ client: client! })}`)).toEqual({ ok: true, output: '' });
  }, 30_000);

  test('the stock-like config, both file lists', async () => {
    expect(await check(`${stock()}\n${fragment()}`)).toEqual({ ok: true, output: '' });
    expect(await check(`${stock()}\n${fragment({ fileList: 'cli' })}`)).toEqual({ ok: true, output: '' });
  }, 30_000);

  test('jobdefs Incremental: passes when the admin defines it (as the ApisCP add-on does), fails when not', async () => {
    // Complete on its own: a JobDefs naming another JobDefs inherits nothing in 9.6 ("Type" missing).
    const incremental = ['JobDefs {', '  Name = "Incremental"', '  Type = Backup', '  Level = Incremental', '  Client = apiscp-fd', '  FileSet = "Full Set"',
      '  Storage = File1', '  Messages = Standard', '  Pool = File', '  Priority = 10', '}', ''].join('\n');
    expect(await check(`${stock()}\n${incremental}\n${fragment({ jobdefs: 'Incremental' })}`)).toEqual({ ok: true, output: '' });
    const missing = await check(`${stock()}\n${fragment({ jobdefs: 'Incremental' })}`);
    expect(missing.ok).toBe(false);
    expect(missing.output).toMatch(/Could not find config Resource "Incremental"/);
  }, 30_000);

  test("a catalog from the package's make_sqlite3_tables when no empty bacula.db is shipped", async () => {
    const fresh = join(root, 'fresh-catalog');
    mkdirSync(fresh);
    const db = await prepareCatalog(fresh, 'bacula', null);
    const tables = (await run(cmd('sqlite3', [db, '.tables']))).stdout.split(/\s+/);
    expect(tables).toEqual(expect.arrayContaining(['Job', 'File', 'Media', 'Version']));
    writeFileSync(join(fresh, 'query.sql'), '');
    expect(await check(stock().replaceAll(dir, fresh) + '\n' + fragment())).toEqual({ ok: true, output: '' });
  }, 30_000);

  test('a broken fragment fails', async () => {
    const typo = await check(`${stock()}\n${fragment().replace('RunsOnClient = yes', 'RunsOnKlient = yes')}`);
    expect(typo).toMatchObject({ ok: false });
    expect(typo.output).toMatch(/RunsOnKlient/);
    expect((await check(`${stock()}\n${fragment().replace(/\}\n$/, '')}`)).ok).toBe(false);
  }, 30_000);
});

describe('with real director, storage and file daemons', () => {
  let h: BaculaHarness;
  let restores = 0;
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  const out = async (file: string, args: string[]): Promise<string> => (await run(cmd(file, args))).stdout;
  const calls = (jobId: number): string[] => readFileSync(join(state, 'calls.log'), 'utf8').split('\n').filter((l) => l.includes(`[--jobid] [${jobId}]`));
  const restoreAll = async (opts: { fileset?: string; jobIds?: number[] } = {}): Promise<(p: string) => string> => {
    const where = join(root, `restore ${++restores}`);
    const started = Date.now();
    const r = await h.restore({ fileset: opts.fileset ?? 'ApisCP', where, jobIds: opts.jobIds });
    console.info(`restore ${r.jobId}: ${r.status} in ${Date.now() - started} ms`);
    expect(r.status, r.log).toBe('T');
    return (p) => join(where, p);
  };
  const acl = (p: string): Promise<string> => out('getfacl', ['--omit-header', '--absolute-names', '--numeric', p]);
  const xattr = (p: string): Promise<string> => out('getfattr', ['--absolute-names', '--only-values', '-n', 'user.apiscp', p]);

  beforeAll(async () => {
    mkdirSync(state, { recursive: true });
    write(join(home, 'site1/shadow/var/www/html/index.html'), '<h1>site1</h1>');
    write(join(home, 'site1/shadow/var/www/fortified.txt'), 'acl + xattr');
    write(join(home, 'site1/shadow/var/lib/mysql/db1/t.ibd'), 'raw database file: never backed up');
    write(join(home, 'site1/info/current/siteinfo'), 'domain = example.com\n');
    write(join(home, 'siteold/shadow/stale.txt'), 'not a siteN directory');
    symlinkSync('site1', join(home, 'example.com'));
    write(join(dumps, '2024-01-01T00-00-00/mysql/site1/db1.sql.zst'), 'dump');
    write(join(dumps, '2024-01-02T00-00-00.inprogress/partial.sql'), 'half written');
    const www = join(home, 'site1/shadow/var/www');
    // Fortification: access + default ACLs for the site admin, numeric ids that exist nowhere.
    await run(cmd('setfacl', ['-m', 'u:12345:rwx', '-d', '-m', 'u:12345:rwx,u:48:rwx', www]));
    await run(cmd('setfacl', ['-m', 'u:12345:rw,g:12346:r', join(www, 'fortified.txt')]));
    await run(cmd('setfattr', ['-n', 'user.apiscp', '-v', 'fortified', join(www, 'fortified.txt')]));
    await run(cmd('chown', ['12345:12346', join(www, 'fortified.txt')]));
    const custom = buildJob({ job: 'Custom', before: `${STAND_IN} "${state}" hook custom-before --jobid %i --client %c`, after: `${STAND_IN} "${state}" hook custom-after --jobid %i --status "%e"` });
    const started = Date.now();
    h = await startBacula({
      extraDirectorConfig: [fragment(), fragment({ fileset: 'ApisCP-cli', job: 'ApisCP-cli', fileList: 'cli' }), custom].join('\n'),
      clientRunBefore: `${STAND_IN} "${state}" hook harness-before --jobid %i`,
    });
    console.info(`daemons up in ${Date.now() - started} ms (${h.baseDir})`);
  }, 60_000);

  // Runs even when a test failed: no daemon may outlive the file.
  afterAll(async () => {
    await h?.stop();
  });

  const job = async (name: string, level: string) => {
    const started = Date.now();
    const r = await h.runJob(name, level);
    console.info(`${name} ${level} job ${r.jobId}: ${r.status} in ${Date.now() - started} ms`);
    return r;
  };

  test("the director schedules nothing by itself (the stock WeeklyCycle would start jobs at 23:05; the tests below run them by hand)", async () => {
    const status = await h.bconsole('status dir');
    expect(status).toMatch(/Scheduled Jobs:[\s\S]*No Scheduled Jobs\./);
    expect(await h.bconsole('show job=BackupClient1')).toMatch(/Schedule: name=WeeklyCycle/i); // it has one, held
  });

  test('Full: hook before and after; restore keeps content, ACLs, xattrs, numeric owners; excludes hold', async () => {
    const r = await job('ApisCP', 'Full');
    expect(r.status, r.log).toBe('T');
    const [pre, post] = calls(r.jobId);
    expect(pre).toContain(`[--config] [${join(root, 'etc', 'apiscp backup.yaml')}] [hook] [pre-backup] [--engine] [bacula] [--level] [Full] [--jobid] [${r.jobId}] [--job] [ApisCP]`);
    expect(post).toContain(`[hook] [post-backup] [--engine] [bacula] [--status] [OK] [--jobid] [${r.jobId}] [--job] [ApisCP]`);

    const at = await restoreAll();
    const www = join(home, 'site1/shadow/var/www');
    expect(readFileSync(at(join(www, 'html/index.html')), 'utf8')).toBe('<h1>site1</h1>');
    expect(readFileSync(at(join(home, 'site1/info/current/siteinfo')), 'utf8')).toBe('domain = example.com\n');
    expect(existsSync(at(join(dumps, '2024-01-01T00-00-00/mysql/site1/db1.sql.zst')))).toBe(true);
    const fortified = join(www, 'fortified.txt');
    expect(await acl(at(fortified))).toBe(await acl(fortified));
    expect(await acl(at(fortified))).toContain('user:12345:rw-');
    expect(await acl(at(www))).toBe(await acl(www));
    expect(await acl(at(www))).toContain('default:user:48:rwx');
    expect(await xattr(at(fortified))).toBe('fortified');
    expect([statSync(at(fortified)).uid, statSync(at(fortified)).gid]).toEqual([12345, 12346]);
    for (const never of ['site1/shadow/var/lib', 'siteold', 'example.com']) expect(existsSync(at(join(home, never))), never).toBe(false);
    expect(existsSync(at(join(dumps, '2024-01-02T00-00-00.inprogress')))).toBe(false);
  }, 60_000);

  test('Incremental reaches the hook as %l, and a site created since is backed up without a config change', async () => {
    write(join(home, 'site2/shadow/var/www/html/index.html'), '<h1>new site</h1>');
    const r = await job('ApisCP', 'Incremental');
    expect(r.status, r.log).toBe('T');
    expect(calls(r.jobId)[0]).toContain('[--level] [Incremental]');
    const at = await restoreAll();
    expect(readFileSync(at(join(home, 'site2/shadow/var/www/html/index.html')), 'utf8')).toBe('<h1>new site</h1>');
    expect(existsSync(at(join(home, 'site1/shadow/var/www/html/index.html')))).toBe(true);
  }, 60_000);

  test('Differential reaches the hook as %l', async () => {
    const r = await job('ApisCP', 'Differential');
    expect(r.status, r.log).toBe('T');
    expect(calls(r.jobId)[0]).toContain('[--level] [Differential]');
  }, 60_000);

  test('pre-backup exiting non-zero fails the job (f); post-backup still runs and hears it', async () => {
    writeFileSync(join(state, 'pre-backup.exit'), '3');
    try {
      const r = await job('ApisCP', 'Incremental');
      expect(r.status, r.log).toBe('f');
      expect(r.log).toMatch(/RunScript failed/);
      const [pre, post] = calls(r.jobId);
      expect(pre).toContain('[pre-backup]');
      expect(post).toContain('[post-backup] [--engine] [bacula] [--status] [Error]');
    } finally {
      rmSync(join(state, 'pre-backup.exit'));
    }
  }, 60_000);

  test("fileList 'cli': the client-side `apiscp-backup paths` output is what gets saved", async () => {
    writeFileSync(join(state, 'paths.list'), `${join(home, 'site2/shadow')}\n${dumps}\n`);
    const r = await job('ApisCP-cli', 'Full');
    expect(r.status, r.log).toBe('T');
    expect(readFileSync(join(state, 'calls.log'), 'utf8')).toContain(`[--config] [${join(root, 'etc', 'apiscp backup.yaml')}] [paths]`);
    const at = await restoreAll({ fileset: 'ApisCP-cli', jobIds: [r.jobId] });
    expect(existsSync(at(join(home, 'site2/shadow/var/www/html/index.html')))).toBe(true);
    expect(existsSync(at(join(home, 'site1')))).toBe(false);
    expect(existsSync(at(join(dumps, '2024-01-02T00-00-00.inprogress')))).toBe(false);
  }, 60_000);

  test('buildJob and clientRunBefore: arbitrary client commands for later hook tests', async () => {
    writeFileSync(join(h.dataDir, 'file.txt'), 'data');
    const custom = await job('Custom', 'Full');
    expect(custom.status, custom.log).toBe('T');
    expect(calls(custom.jobId)).toEqual([
      expect.stringContaining(`[hook] [custom-before] [--jobid] [${custom.jobId}] [--client] [apiscp-fd]`),
      expect.stringContaining(`[hook] [custom-after] [--jobid] [${custom.jobId}] [--status] [OK]`),
    ]);
    const again = buildJob({ job: 'Another', client: h.clientName, before: '/bin/true' });
    expect(await h.testConfig(`${readFileSync(h.directorConfigFile, 'utf8')}\n${again}`)).toEqual({ ok: true, output: '' });
    expect((await h.testConfig(`${readFileSync(h.directorConfigFile, 'utf8')}\n${again.replace('Client', 'Klient')}`)).ok).toBe(false);
    const harness = await job('Harness', 'Full');
    expect(harness.status, harness.log).toBe('T');
    expect(calls(harness.jobId)).toEqual([expect.stringContaining('[hook] [harness-before]')]);
  }, 60_000);
});
