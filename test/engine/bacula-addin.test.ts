import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { addinHookCommands, renderAddinBaseConf } from '../../lib/engine/bacula-addin.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { buildApiscpTree } from '../../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../../lib/throwaway/mariadb.js';
import { startBacula, stockDirectorConfig, testDirectorConfig, type BaculaHarness } from '../harness/bacula.js';
import { cli, NODE, rmrf } from '../helpers/e2e.js';

// The ApisCP Bacula add-in's director (test/fixtures/bacula-addin: its include structure, the
// generator, the template) with three servers, `self` among them. `bacula config --write` puts
// our hooks into local.d/servers/base.conf; the generated config passes `bacula-dir -t`, and the
// add-in's own job `self-Backup` (JobDefs Incremental: Accurate, 2 concurrent jobs) runs our real
// hook on the client through the wrapper `install` put in place.

const FIXTURE = fileURLToPath(new URL('../fixtures/bacula-addin', import.meta.url));
const base = mkdtempSync(join(tmpdir(), 'addin-'));
chmodSync(base, 0o755);
const root = join(base, 'root');
const etc = join(root, 'etc/bacula');
const work = join(base, 'work');
const configFile = join(root, 'etc/apiscp-backup/config.yaml');
const wrapper = join(root, 'usr/local/sbin/apiscp-backup');
let my: MariadbServer;
let h: BaculaHarness;
let rpmOwned: Record<string, string>;

function fill(text: string, vars: Record<string, string | number>): string {
  return text.replace(/@@([A-Z]+)@@/g, (_, k: string) => String(vars[k] ?? `@@${k}@@`));
}

/** Every file under a directory with its sha256, to prove nothing was written there. */
function hashes(dir: string, only: (rel: string) => boolean = () => true): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const p = join(dir, rel);
    if (statSync(p).isFile() && only(rel)) out[rel] = createHash('sha256').update(readFileSync(p)).digest('hex');
  }
  return out;
}

const isRpmOwned = (rel: string): boolean => rel.startsWith('conf.d/') || rel === 'bacula-dir-apnscp.conf' || rel === 'helpers.sh';

async function generator(): Promise<string> {
  return (await run(cmd(join(etc, 'conf.d/bacula-dir.sh'), []), { timeoutMs: 30_000 })).stdout;
}

beforeAll(async () => {
  my = await startMariadb();
  await my.sql('CREATE DATABASE site1_shop; CREATE TABLE site1_shop.orders (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; INSERT INTO site1_shop.orders VALUES (1, "a"), (2, "b");');
  await buildApiscpTree(root, { sites: 2 });
  mkdirSync(join(root, 'etc/apiscp-backup'), { recursive: true });
  writeFileSync(
    configFile,
    JSON.stringify({
      engine: 'bacula',
      paths: { root },
      panel: { enabled: false },
      databases: { mysql: { enabled: true, socket: my.socket, defaults_file: join(root, 'no-my.cnf') }, postgresql: { enabled: false } },
      // Two of the add-in's jobs on one client at once: the second hook waits for the first.
      lock: { wait: '3m' },
    }),
  );

  h = await startBacula({
    baseDir: work,
    clientName: 'self',
    directorName: 'bacula-dir',
    sdDevices: { names: ['FileStorage-1', 'FileStorage-2'], mediaType: 'File' },
    director: async (p) => {
      cpSync(FIXTURE, etc, { recursive: true });
      for (const rel of readdirSync(etc, { recursive: true, encoding: 'utf8' })) {
        const file = join(etc, rel);
        if (statSync(file).isFile()) writeFileSync(file, fill(readFileSync(file, 'utf8'), { ETC: etc, ROOT: root, WORK: p.workDir, FDPORT: p.fdPort }));
      }
      // The RPM links bacula-dir.conf to its own file; the playbook writes /etc/sysconfig/bacula-vars.
      symlinkSync('bacula-dir-apnscp.conf', join(etc, 'bacula-dir.conf'));
      writeFileSync(join(etc, 'bacula-vars'), Object.entries({
        DIR_PORT: p.dirPort, WORK_DIR: p.workDir, DIR_PASSWORD: p.passwords.console, LOG_FILE: p.logFile, MONITOR_PASSWORD: 'm',
        DB_NAME: 'bacula', SD_HOSTNAME: '127.0.0.1', SD_PORT: p.sdPort, SD_PASSWORD: p.passwords.sd, CONSOLE_PASSWORD: 'c',
      }).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
      // Three servers in two slots, as the playbook writes them (client-template.conf.j2).
      const server = (slot: string, name: string): void => {
        mkdirSync(join(etc, 'local.d/servers', slot), { recursive: true, mode: 0o700 });
        writeFileSync(join(etc, 'local.d/servers', slot, `${name}.conf`), `Client {\n\tName = ${name}\n\tPassword = "${p.passwords.fd}"\n\tAddress = "127.0.0.1"\n\tFileSet = "Client-Layer"\n}\n`);
      };
      server('1', 'self');
      server('1', 'web2');
      server('2', 'web3');
      rpmOwned = hashes(etc, isRpmOwned);

      // The client side: install puts the wrapper in place and never writes in /etc/bacula.
      const before = hashes(etc);
      const inst = await cli(['--root', root, '--config', configFile, 'install', '--engine', 'bacula']);
      expect(inst.code, inst.stderr + inst.stdout).toBe(0);
      expect(hashes(etc)).toEqual(before);
      expect(inst.stdout).toMatch(/ApisCP Bacula add-in director \(this host has it\): on the director run `apiscp-backup bacula config --write`/);
      expect(inst.stdout).toMatch(/remove the add-in's documented RunScript calling backup_dbs\.php --force/);
      expect(readFileSync(wrapper, 'utf8')).toContain(`exec ${NODE} `);

      // The director side.
      const w = await cli(['--config', configFile, 'bacula', 'config', '--write']);
      expect(w.code, w.stderr).toBe(0);
      expect(w.stdout).toContain(`wrote ${join(etc, 'local.d/servers/base.conf')} (from ${join(etc, 'conf.d/servers/base.conf')})`);
      return join(etc, 'bacula-dir.conf');
    },
  });
}, 240_000);

afterAll(async () => {
  await h?.stop();
  await my?.destroy();
  if (!process.env.KEEP_ADDIN) rmrf(base);
});

describe('the add-in layout', () => {
  test('--write is idempotent, keeps RPM-owned files, and every generated <name>-Backup job carries our hooks', async () => {
    const local = join(etc, 'local.d/servers/base.conf');
    const first = readFileSync(local, 'utf8');
    const again = await cli(['--config', configFile, 'bacula', 'config', '--write']);
    expect(again.stdout).toContain(`${local}: unchanged`);
    expect(readFileSync(local, 'utf8')).toBe(first);
    const printed = await cli(['--config', configFile, 'bacula', 'config']);
    expect(printed.stdout).toBe(first);
    expect(hashes(etc, isRpmOwned)).toEqual(rpmOwned);

    const generated = await generator();
    const jobs = generated.split(/\n(?=Client \{|Job \{)/).filter((b) => b.startsWith('Job {'));
    expect(jobs.map((j) => /Name = "([^"]+)"/.exec(j)?.[1])).toEqual(['self-Backup', 'web2-Backup', 'web3-Backup']);
    for (const j of jobs) {
      expect(j).toContain(`Command = "${wrapper} hook pre-backup --engine bacula --level %l --jobid %i --job %n"`);
      expect(j).toContain(`Command = "${wrapper} hook post-backup --engine bacula --status '%e' --jobid %i --job %n"`);
    }
    // Our markers are comments: the generator dropped them; the Client resources have no RunScript.
    expect(generated).not.toContain('apiscp-backup hooks');
    for (const c of generated.split(/\n(?=Client \{|Job \{)/).filter((b) => b.startsWith('Client {'))) expect(c).not.toContain('RunScript');
  });

  test("an admin's own local.d/servers/base.conf (the add-in's documented backup_dbs.php RunScript) is kept; that RunScript is flagged", async () => {
    const local = join(etc, 'local.d/servers/base.conf');
    const ours = readFileSync(local, 'utf8');
    // What the add-in's README tells admins to do: copy the template to local.d, add a RunScript.
    const installed = readFileSync(join(etc, 'conf.d/servers/base.conf'), 'utf8');
    const theirs = installed.replace('  Max Full Interval = 2 months', '  Max Full Interval = 2 months\n  RunScript {\n    RunsWhen = Before\n    FailJobOnError = No\n    Command = "/usr/bin/apnscp_php /usr/local/apnscp/bin/scripts/backup_dbs.php --force"\n  }\n  Priority = 11');
    writeFileSync(local, theirs);
    try {
      const w = await cli(['--config', configFile, 'bacula', 'config', '--write']);
      expect(w.stdout).toContain('(your edits kept, our hooks replaced)');
      expect(w.stdout).toMatch(/also runs backup_dbs\.php .*remove that RunScript/);
      const now = readFileSync(local, 'utf8');
      expect(now).toContain('Priority = 11');
      expect(now.match(/hook pre-backup/g)).toHaveLength(1);
      const again = await cli(['--config', configFile, 'bacula', 'config', '--write']);
      expect(again.stdout).toContain(`${local}: unchanged`);
    } finally {
      writeFileSync(local, ours);
    }
  });

  test('the generated director config passes bacula-dir -t; the RPM-owned EXTRA route does not', async () => {
    expect(await testDirectorConfig(join(etc, 'bacula-dir.conf'))).toMatchObject({ ok: true });
    const extra = join(etc, 'local.d/extra.sh');
    const saved = readFileSync(extra, 'utf8');
    const hooks = addinHookCommands({ wrapper });
    writeFileSync(extra, `EXTRA='  RunScript {\n    RunsWhen = Before\n    RunsOnClient = yes\n    Command = "${hooks.before}"\n  }\n'\n`);
    try {
      const bad = await testDirectorConfig(join(etc, 'bacula-dir.conf'));
      expect(bad.ok).toBe(false);
      expect(bad.output).toMatch(/Keyword "?RunScript"? not permitted in this resource/i);
    } finally {
      writeFileSync(extra, saved);
    }
  });

  test('awk -v eats backslashes: a \\" in the template arrives as " (why our Commands use single quotes)', async () => {
    const local = join(etc, 'local.d/servers/base.conf');
    const saved = readFileSync(local, 'utf8');
    writeFileSync(local, saved.replace(`'%e'`, `\\"%e\\"`));
    try {
      expect(await generator()).toContain(`--status "%e" --jobid`);
    } finally {
      writeFileSync(local, saved);
    }
  });

  test('status on the director warns when the installed template changed under local.d/servers/base.conf', async () => {
    const installed = join(etc, 'conf.d/servers/base.conf');
    const saved = readFileSync(installed, 'utf8');
    writeFileSync(installed, saved.replace('Job Retention = 45 days', 'Job Retention = 50 days'));
    try {
      const s = await cli(['--config', configFile, 'status']);
      expect(s.stdout).toMatch(/local\.d\/servers\/base\.conf was made from an older .*conf\.d\/servers\/base\.conf/);
      const local = renderAddinBaseConf({ installedTemplate: readFileSync(installed, 'utf8'), localTemplate: readFileSync(join(etc, 'local.d/servers/base.conf'), 'utf8'), hooks: addinHookCommands({ wrapper }) });
      expect(local).toContain('Job Retention = 45 days'); // the local template's own text is kept, only the hash moves
    } finally {
      writeFileSync(installed, saved);
    }
  });
});

describe('the stock layout', () => {
  test('--write makes an include file (idempotent) that a stock bacula-dir.conf @-includes and bacula-dir -t accepts', async () => {
    const stockEtc = join(base, 'stock-etc');
    mkdirSync(stockEtc, { recursive: true });
    const workDir = join(work, 'dir'); // the harness's catalog is there
    const stock = stockDirectorConfig({
      directorName: 'x-dir', dirPort: 9101, consolePassword: 'a', workDir, clientName: 'apiscp-fd', fdPort: 9102, fdPassword: 'b',
      sdPort: 9103, sdPassword: 'c', logFile: join(base, 'stock.log'), dataDir: base,
    });
    writeFileSync(join(stockEtc, 'bacula-dir.conf'), stock);
    const w = await cli(['--config', configFile, 'bacula', 'config', '--etc', stockEtc, '--write']);
    expect(w.code, w.stderr).toBe(0);
    const include = join(stockEtc, 'apiscp-backup-dir.conf');
    expect(w.stdout).toContain(`wrote ${include}`);
    expect(w.stdout).toContain(`@${include}`);
    expect((await cli(['--config', configFile, 'bacula', 'config', '--etc', stockEtc, '--write'])).stdout).toContain(`${include}: unchanged`);
    expect(readFileSync(join(stockEtc, 'bacula-dir.conf'), 'utf8')).toBe(stock); // the admin's file is theirs
    writeFileSync(join(stockEtc, 'with-include.conf'), `${stock}\n@${include}\n`);
    expect(await testDirectorConfig(join(stockEtc, 'with-include.conf'))).toMatchObject({ ok: true });
  });
});

describe("the add-in's job runs our hook on the client", () => {
  const status = (): Record<string, any> => JSON.parse(readFileSync(join(root, 'var/lib/apiscp-backup/status.json'), 'utf8'));

  test('self-Backup: Full then Incremental (%l from the JobDefs), dumps under /var/backup kept by Client-Layer', async () => {
    const full = await h.runJob('self-Backup', 'Full');
    expect(full.status, full.log).toBe('T');
    expect(status()).toMatchObject({ status: 'ok', level: 'Full', job: { name: 'self-Backup', id: String(full.jobId) }, backup: { status: 'ok', detail: 'OK' }, dumps: { failed: 0 } });
    const runId: string = status().runId;
    const files = await h.bconsole(`list files jobid=${full.jobId}`);
    expect(files).toContain(join(root, 'var/backup/apiscp-backup', runId, 'manifest.json'));
    expect(files).toMatch(/site1_shop\.sql\.zst/);
    // strippath=2 applies to the site trees: the catalog holds them without two leading components.
    console.info(`Client-Layer site paths in the catalog: ${files.split('\n').filter((l) => /shadow/.test(l)).slice(0, 2).join(' | ')}`);

    // The job's own default level (JobDefs Incremental) reaches the hook as %l.
    const jobId = Number(/JobId=(\d+)/.exec(await h.bconsole('run job=self-Backup yes'))![1]);
    await h.bconsole(`wait jobid=${jobId}`);
    expect(status()).toMatchObject({ status: 'ok', level: 'Incremental', job: { id: String(jobId) } });
    const inc = await h.bconsole(`list files jobid=${jobId}`);
    expect(inc).toContain(join(root, 'var/backup/apiscp-backup', status().runId, 'manifest.json'));
  });

  // On this sqlite-catalog director 9.6.7 ran the two one after the other (seen in bacula.log);
  // hooks that do meet wait for the lock (cli-dump.test.ts shows that with a real collision).
  test('two of the add-in jobs queued at once for one client: both T, each with its own dump run', async () => {
    const runs = (): string[] => readdirSync(join(root, 'var/backup/apiscp-backup')).filter((n) => /^\d{8}T\d{6}Z$/.test(n));
    const before = new Set(runs());
    // Same level, so both write to pool Full-1 on one device at once (different pools would queue).
    const a = Number(/JobId=(\d+)/.exec(await h.bconsole('run job=self-Backup level=Full yes'))![1]);
    const b = Number(/JobId=(\d+)/.exec(await h.bconsole('run job=web2-Backup level=Full yes'))![1]);
    for (const id of [a, b]) await h.bconsole(`wait jobid=${id}`);
    for (const id of [a, b]) expect(/jobstatus:\s*(\S)/i.exec(await h.bconsole(`llist jobid=${id}`))?.[1], `job ${id}`).toBe('T');
    // Each job has its own complete dump run (retention keeps the 3 newest: both new ones).
    expect(runs().filter((r) => !before.has(r))).toHaveLength(2);
    expect([String(a), String(b)]).toContain(status().job.id);
  });
});

test('the fixture is what the add-in documents: three servers, self among them', () => {
  const servers = readdirSync(join(etc, 'local.d/servers'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.conf') && f !== 'base.conf');
  expect(servers.sort()).toEqual(['1/self.conf', '1/web2.conf', '2/web3.conf']);
  expect(relative(etc, join(etc, 'bacula-dir.conf'))).toBe('bacula-dir.conf');
});
