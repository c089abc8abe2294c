import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { loadConfig } from '../../lib/config/load.js';
import { addToResource, pkiDirectives, tlsDirectives, type TlsFiles } from '../../lib/engine/bacula-tls.js';
import { cmd, type Command } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import { assertBuilt, cli, rmrf } from '../helpers/e2e.js';
import { binary, bconsoleConfig, bconsoleRunner, daemonSet, fdConfig, holdSchedules, jobOutcome, password, prepareCatalog, sdConfig, stockDirectorConfig, type Bconsole, type DaemonSet } from '../harness/bacula.js';
import { createNetwork, listensOn, type TestNetwork } from '../harness/netns.js';

// Issue 30 item 2 (first part): Bacula between two hosts (network namespaces) with TLS required
// on every connection, certificates from `apiscp-backup bacula tls init`, and PKI data
// encryption on the file daemon (its own keypair + the master key's public half). The volume on
// the storage host holds no plaintext of a site file; the client restores with its key; a new
// client restores with the master key; a file daemon with no certificate or one from another CA
// is refused; a new client without the master key gets nothing readable. The director's TLS
// toward client and storage comes from `bacula config --tls-dir` (both layouts).

const base = mkdtempSync(join(tmpdir(), 'offsite-bacula-'));
const MARKER = `site file plaintext ${randomBytes(8).toString('hex')} `;
const DIR_PORT = 9101;
const FD_PORT = 9102;
const SD_PORT = 9103;
const NEW_FD_PORT = 9104;
let net: TestNetwork;
let daemons: DaemonSet;
let bconsole: Bconsole;
const data = join(base, 'data');
const pkiDir = join(base, 'keys');
const volumes = join(base, 'volumes');
const tlsFiles = (name: string): TlsFiles => ({ ca: join(pkiDir, 'tls/ca.crt'), cert: join(pkiDir, `tls/${name}.crt`), key: join(pkiDir, `tls/${name}.key`) });
const pw = { console: password(), sd: password(), fd: password(), newFd: password() };

/** A file daemon config for `name` on the ApisCP host; `tls`: its certificate (or none), `keypair`: PKI. */
function fileDaemon(name: string, port: number, work: string, opts: { tls?: TlsFiles; keypair?: string }): string {
  mkdirSync(work, { recursive: true, mode: 0o700 });
  let text = fdConfig('tls-dir', name, port, name === 'new-fd' ? pw.newFd : pw.fd, work, net.host('srv').address);
  if (opts.tls) {
    text = addToResource(text, 'Director', tlsDirectives(opts.tls, { server: true, allowedCns: ['tls-dir'] }));
    text = addToResource(text, 'FileDaemon', [...tlsDirectives(opts.tls, { server: false }), ...(opts.keypair ? pkiDirectives(opts.keypair, join(pkiDir, 'pki/master.cert')) : [])]);
  }
  const file = join(base, `${name}-${port}-${Date.now()}.conf`);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

async function startAndWait(where: string, c: Command, name: string, port: number): Promise<number> {
  const child = daemons.start(net.inside(where, c), name);
  for (const until = Date.now() + 30_000; !listensOn(child.pid!, port); ) {
    if (child.exitCode !== null) throw new Error(`${name} exited: see ${base}/${name}.out`);
    if (Date.now() > until) throw new Error(`${name} did not listen`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child.pid!;
}

async function testConfig(bin: string, file: string): Promise<void> {
  const r = await run(cmd(binary(bin), ['-t', '-c', file]), { exitClass: exitClasses({ ok: [1] }) });
  expect(r.exitCode, `${bin} -t ${file}: ${r.stdout}${r.stderr}`).toBe(0);
}

beforeAll(async () => {
  assertBuilt();
  net = await createNetwork({ hub: 'dir', hosts: ['srv'], subnet: '10.213.79' });
  daemons = daemonSet(base);
  const dirAddr = net.hub.address;
  const srvAddr = net.host('srv').address;
  // What the admin runs on the director host.
  const init = await cli(['bacula', 'tls', 'init', '--dir', pkiDir, '--daemon', `tls-dir@${dirAddr}`, '--daemon', `harness-sd@${dirAddr}`, '--daemon', `srv-fd@${srvAddr}`, '--daemon', `new-fd@${srvAddr}`, '--pki', 'srv-fd', '--pki', 'new-fd', '--pki', 'master']);
  expect(init.code, init.stderr).toBe(0);
  for (const d of ['tls', 'pki']) {
    for (const n of readdirSync(join(pkiDir, d)).filter((x) => /\.(key|pem|pkikey)$/.test(x))) {
      const st = statSync(join(pkiDir, d, n));
      expect([n, st.mode & 0o777, st.uid]).toEqual([n, 0o600, 0]);
    }
  }
  mkdirSync(data, { recursive: true });
  writeFileSync(join(data, 'index.php'), MARKER.repeat(2000));
  for (const d of ['work', 'sd', 'new-fd']) mkdirSync(join(base, d), { recursive: true, mode: 0o700 });
  mkdirSync(volumes, { recursive: true, mode: 0o700 });
  writeFileSync(join(base, 'work/query.sql'), '');
  await prepareCatalog(join(base, 'work'));

  const dirTls = tlsFiles('tls-dir');
  let dirConf = stockDirectorConfig({
    directorName: 'tls-dir', dirPort: DIR_PORT, consolePassword: pw.console, workDir: join(base, 'work'), clientName: 'srv-fd', fdPort: FD_PORT, fdPassword: pw.fd,
    sdPort: SD_PORT, sdPassword: pw.sd, logFile: join(base, 'bacula.log'), dataDir: data, address: dirAddr,
  });
  // The ApisCP server's Client resource as `bacula config --address … --tls-dir` prints it on that server.
  writeFileSync(join(base, 'fd.password'), pw.fd + '\n', { mode: 0o600 });
  const printed = await cli(['bacula', 'config', '--layout', 'stock', '--client', 'srv-fd', '--address', srvAddr, '--password-file', join(base, 'fd.password'), '--tls-dir', pkiDir, '--tls-name', 'tls-dir']);
  expect(printed.code, printed.stderr).toBe(0);
  const clientResource = /Client \{\n[^{}]*\n\}/.exec(printed.stdout)?.[0];
  expect(clientResource).toMatch(/TLS Require = yes/);
  dirConf = dirConf.replace(/Client \{\n  Name = srv-fd\n[^{}]*\n\}/, clientResource!);
  dirConf += `Client {\n  Name = new-fd\n  Address = ${srvAddr}\n  FDPort = ${NEW_FD_PORT}\n  Catalog = MyCatalog\n  Password = ${JSON.stringify(pw.newFd)}\n}\n`;
  dirConf = addToResource(dirConf, 'Client', tlsDirectives(dirTls, { server: false }), 'new-fd');
  // The director's side toward the storage daemon: `bacula config --tls-dir --write` writes its
  // TLS lines into a file of ours, which the (admin's) Storage resource includes.
  const dirEtc = join(base, 'dir-etc');
  mkdirSync(dirEtc, { recursive: true });
  writeFileSync(join(dirEtc, 'bacula-dir.conf'), '# the admin\'s (stands for the package\'s conffile)\n');
  const wroteDir = await cli(['bacula', 'config', '--layout', 'stock', '--etc', dirEtc, '--client', 'srv-fd', '--tls-dir', pkiDir, '--tls-name', 'tls-dir', '--write']);
  expect(wroteDir.code, wroteDir.stderr).toBe(0);
  const storageTls = join(dirEtc, 'apiscp-backup-dir-tls.conf');
  expect(wroteDir.stdout).toContain(`inside each Storage resource of ${join(dirEtc, 'bacula-dir.conf')} add the line:  @${storageTls}`);
  expect(readFileSync(storageTls, 'utf8')).toMatch(/TLS Require = yes[\s\S]*TLS Certificate = ".*tls-dir\.crt"/);
  dirConf = dirConf.replace(/(\nStorage \{\n  Name = File1\n)/, `$1  @${storageTls}\n`);
  expect(dirConf).toContain(`@${storageTls}`);
  let sdConf = sdConfig('tls-dir', SD_PORT, pw.sd, join(base, 'sd'), volumes, undefined, dirAddr);
  const sdTls = tlsFiles('harness-sd');
  sdConf = addToResource(sdConf, 'Director', tlsDirectives(sdTls, { server: true, allowedCns: ['tls-dir'] }));
  sdConf = addToResource(sdConf, 'Storage', tlsDirectives(sdTls, { server: true, allowedCns: ['srv-fd', 'new-fd'] }));
  const files = { dir: join(base, 'dir.conf'), sd: join(base, 'sd.conf'), con: join(base, 'bconsole.conf') };
  writeFileSync(files.dir, dirConf, { mode: 0o600 });
  writeFileSync(files.sd, sdConf, { mode: 0o600 });
  writeFileSync(files.con, bconsoleConfig('tls-dir', DIR_PORT, pw.console, dirAddr), { mode: 0o600 });
  // The ApisCP server's file daemon: the admin copies its own files (and only the master key's
  // public half) from the director host, then `bacula tls fd --write` adds TLS and PKI.
  const clientDir = join(base, 'on-client');
  for (const f of ['tls/ca.crt', 'tls/srv-fd.crt', 'tls/srv-fd.key', 'pki/srv-fd.pem', 'pki/master.cert']) {
    mkdirSync(join(clientDir, f, '..'), { recursive: true, mode: 0o700 });
    copyFileSync(join(pkiDir, f), join(clientDir, f));
  }
  // `install --engine bacula --tls-dir` on the ApisCP server writes its bacula-fd.conf (under --root).
  const clientRoot = join(base, 'client-root');
  const fd = join(clientRoot, 'etc/bacula/bacula-fd.conf');
  mkdirSync(join(fd, '..'), { recursive: true });
  copyFileSync(fileDaemon('srv-fd', FD_PORT, join(base, 'fd'), {}), fd);
  chmodSync(fd, 0o640);
  const clientConfig = join(clientRoot, 'etc/apiscp-backup/config.yaml');
  mkdirSync(join(clientConfig, '..'), { recursive: true });
  writeFileSync(clientConfig, JSON.stringify({ engine: 'bacula', paths: { root: clientRoot }, panel: { enabled: false }, databases: { mysql: { enabled: false }, postgresql: { enabled: false } } }), { mode: 0o600 });
  const install = (dir: string) => cli(['--root', clientRoot, '--config', clientConfig, 'install', '--engine', 'bacula', '--tls-dir', dir, '--client', 'srv-fd', '--director', 'tls-dir']);
  const plainFd = readFileSync(fd, 'utf8');
  // The director host's directory holds master.pem: refused, nothing written.
  const refused = await install(pkiDir);
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(/master key's private half must not be on a client/);
  // A private key other users can read: refused, nothing written.
  chmodSync(join(clientDir, 'pki/srv-fd.pem'), 0o644);
  const readable = await install(clientDir);
  chmodSync(join(clientDir, 'pki/srv-fd.pem'), 0o600);
  expect(readable.code).toBe(2);
  expect(readable.stderr).toContain(`${join(clientDir, 'pki/srv-fd.pem')}: mode 0644: other users can read the secret`);
  expect(readFileSync(fd, 'utf8')).toBe(plainFd);
  const wrote = await install(clientDir);
  expect(wrote.code, wrote.stderr).toBe(0);
  expect(wrote.stdout).toContain(`added TLS (required, director tls-dir only) and PKI data encryption (keypair srv-fd, master key's public half) to ${fd}`);
  expect(readFileSync(fd, 'utf8')).toMatch(/PKI Encryption = Yes[\s\S]*PKI Master Key = .*master\.cert/);
  expect(statSync(fd).mode & 0o777).toBe(0o600);
  const again = await install(clientDir);
  expect(again.stdout).toContain(`${fd}: TLS and PKI encryption already set`);
  // Only paths travel: no piece of a private key in what install printed or logged.
  const keyBody = (f: string): string[] => {
    const b = readFileSync(f, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    return Array.from({ length: Math.floor(b.length / 24) }, (_, i) => b.slice(i * 24, i * 24 + 24));
  };
  const pieces = [...keyBody(join(clientDir, 'tls/srv-fd.key')), ...keyBody(join(pkiDir, 'pki/srv-fd.pkikey'))];
  const logFile = loadConfig({ file: clientConfig }).paths.logFile;
  expect(existsSync(logFile), logFile).toBe(true);
  const said = [refused, readable, wrote, again].map((r) => r.stdout + r.stderr).join('\n') + (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  expect(pieces.length).toBeGreaterThan(10);
  expect(pieces.filter((p) => said.includes(p))).toEqual([]);
  await testConfig('bacula-dir', files.dir);
  await testConfig('bacula-sd', files.sd);
  await testConfig('bacula-fd', fd);

  await startAndWait('dir', cmd(binary('bacula-sd'), ['-f', '-c', files.sd]), 'sd', SD_PORT);
  await startAndWait('srv', cmd(binary('bacula-fd'), ['-f', '-c', fd]), 'srv-fd', FD_PORT);
  await startAndWait('dir', cmd(binary('bacula-dir'), ['-f', '-c', files.dir]), 'dir', DIR_PORT);
  bconsole = bconsoleRunner(files.con, (c) => net.inside('dir', c));
  await holdSchedules(bconsole);
  const label = await bconsole('label storage=File1 pool=File volume=Tls-0001');
  expect(label, /successfully created/i.test(label) ? '' : await bconsole('messages')).toMatch(/successfully created/i);
}, 180_000);

afterAll(async () => {
  await daemons?.stop();
  await net?.destroy();
  rmrf(base);
});

async function runJob(): Promise<{ status: string; log: string }> {
  const out = await bconsole('run job=BackupClient1 level=Full yes');
  const id = Number(/JobId=(\d+)/.exec(out)?.[1]);
  expect(id, out).toBeGreaterThan(0);
  return jobOutcome(bconsole, id);
}

async function restore(client: string, where: string, restoreClient = client): Promise<{ status: string; log: string }> {
  const out = await bconsole(`restore client=${client} restoreclient=${restoreClient} fileset="Full Set" where=${JSON.stringify(where)} select current all done yes`);
  const id = Number(/JobId=(\d+)/.exec(out)?.[1]);
  expect(id, out).toBeGreaterThan(0);
  return jobOutcome(bconsole, id);
}

let backedUp = false;

test('a job over TLS with PKI encryption: the volume holds no plaintext, the client restores with its own key', async () => {
  const job = await runJob();
  expect(job.status, job.log).toBe('T');
  expect(job.log).toMatch(/Encryption:\s+yes/);
  backedUp = true;
  const volume = readFileSync(join(volumes, 'Tls-0001'));
  expect(volume.length).toBeGreaterThan(MARKER.length * 2000 * 0.5);
  expect(volume.includes(Buffer.from(MARKER.trim()))).toBe(false);
  const where = join(base, 'restore-own');
  const r = await restore('srv-fd', where);
  expect(r.status, r.log).toBe('T');
  expect(readFileSync(join(where, data, 'index.php'), 'utf8')).toBe(MARKER.repeat(2000));
}, 180_000);

test('disaster: a new client with only the master keypair restores the encrypted backup', async () => {
  expect(backedUp).toBe(true);
  const conf = fileDaemon('new-fd', NEW_FD_PORT, join(base, 'new-fd'), { tls: tlsFiles('new-fd'), keypair: join(pkiDir, 'pki/master.pem') });
  await startAndWait('srv', cmd(binary('bacula-fd'), ['-f', '-c', conf]), 'new-fd', NEW_FD_PORT);
  const where = join(base, 'restore-master');
  const r = await restore('srv-fd', where, 'new-fd');
  expect(r.status, r.log).toBe('T');
  expect(readFileSync(join(where, data, 'index.php'), 'utf8')).toBe(MARKER.repeat(2000));
}, 180_000);

test('disaster without the master key: a new client with only its own keypair cannot read the files', async () => {
  expect(backedUp).toBe(true);
  // The same new client, but its PKI keypair is its own (new-fd.pem), not the master's: Bacula
  // has no session key it can open, so the file must not come back in the clear.
  await daemons.stop();
  daemons = daemonSet(base);
  await startAndWait('dir', cmd(binary('bacula-sd'), ['-f', '-c', join(base, 'sd.conf')]), 'sd-nokey', SD_PORT);
  await startAndWait('dir', cmd(binary('bacula-dir'), ['-f', '-c', join(base, 'dir.conf')]), 'dir-nokey', DIR_PORT);
  const conf = fileDaemon('new-fd', NEW_FD_PORT, join(base, 'new-fd-nokey'), { tls: tlsFiles('new-fd'), keypair: join(pkiDir, 'pki/new-fd.pem') });
  await startAndWait('srv', cmd(binary('bacula-fd'), ['-f', '-c', conf]), 'new-fd-nokey', NEW_FD_PORT);
  const where = join(base, 'restore-nokey');
  const r = await restore('srv-fd', where, 'new-fd');
  const restored = join(where, data, 'index.php');
  const content = existsSync(restored) ? readFileSync(restored) : Buffer.alloc(0);
  console.log(`restore without the master key: job ${r.status}, ${content.length} bytes written`);
  expect(r.status, r.log).not.toBe('T');
  expect(r.log).toMatch(/decrypt|session key|encrypt/i);
  expect(content.includes(Buffer.from(MARKER.trim()))).toBe(false);
}, 180_000);

test('a file daemon with no certificate, or one from another CA, is refused', async () => {
  // Replace srv-fd by an impostor without TLS, then by one with a certificate of its own CA.
  await daemons.stop();
  daemons = daemonSet(base);
  await startAndWait('dir', cmd(binary('bacula-sd'), ['-f', '-c', join(base, 'sd.conf')]), 'sd2', SD_PORT);
  await startAndWait('dir', cmd(binary('bacula-dir'), ['-f', '-c', join(base, 'dir.conf')]), 'dir2', DIR_PORT);
  const plain = fileDaemon('srv-fd', FD_PORT, join(base, 'fd-plain'), {});
  const pid = await startAndWait('srv', cmd(binary('bacula-fd'), ['-f', '-c', plain]), 'fd-plain', FD_PORT);
  const noCert = await runJob();
  expect(noCert.status, noCert.log).not.toBe('T');
  expect(noCert.log).toMatch(/TLS|certificate|authenticat/i);
  process.kill(pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));

  const other = join(base, 'other-ca');
  mkdirSync(other, { recursive: true, mode: 0o700 });
  await run(cmd('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(other, 'srv-fd.key'), '-out', join(other, 'srv-fd.crt'), '-subj', '/CN=srv-fd', '-days', '2']));
  const forged = fileDaemon('srv-fd', FD_PORT, join(base, 'fd-forged'), { tls: { ca: join(other, 'srv-fd.crt'), cert: join(other, 'srv-fd.crt'), key: join(other, 'srv-fd.key') } });
  await startAndWait('srv', cmd(binary('bacula-fd'), ['-f', '-c', forged]), 'fd-forged', FD_PORT);
  const wrong = await runJob();
  expect(wrong.status, wrong.log).not.toBe('T');
}, 240_000);

test('bacula config --tls-dir on the add-in\'s director: the template\'s Client and every Storage resource of the slot files require TLS; RPM files untouched', async () => {
  const etc = join(base, 'addin-etc');
  cpSync(fileURLToPath(new URL('../fixtures/bacula-addin', import.meta.url)), etc, { recursive: true });
  for (const rel of readdirSync(etc, { recursive: true, encoding: 'utf8' })) {
    const file = join(etc, rel);
    if (statSync(file).isFile()) writeFileSync(file, readFileSync(file, 'utf8').replaceAll('@@ETC@@', etc).replaceAll('@@ROOT@@', base).replaceAll('@@WORK@@', join(base, 'work')).replaceAll('@@FDPORT@@', String(FD_PORT)));
  }
  writeFileSync(join(etc, 'bacula-vars'), 'DIR_PORT=9101\nWORK_DIR=/tmp\nDIR_PASSWORD=d\nLOG_FILE=/tmp/l\nMONITOR_PASSWORD=m\nDB_NAME=bacula\nSD_HOSTNAME=sd.example\nSD_PORT=9103\nSD_PASSWORD=s\nCONSOLE_PASSWORD=c\n', { mode: 0o600 });
  mkdirSync(join(etc, 'local.d/servers/1'), { recursive: true, mode: 0o700 });
  writeFileSync(join(etc, 'local.d/servers/1/web1.conf'), 'Client {\n\tName = web1\n\tPassword = "p"\n\tAddress = "web1.example"\n}\n');
  const rpm = ['conf.d/servers/base.conf', 'conf.d/servers/slot-base.conf', 'conf.d/servers/storage.conf'].map((f) => readFileSync(join(etc, f), 'utf8'));
  const config = ['bacula', 'config', '--layout', 'addin', '--etc', etc, '--tls-dir', pkiDir, '--tls-name', 'tls-dir', '--write'];
  const w = await cli(config);
  expect(w.code, w.stderr).toBe(0);
  expect(w.stdout).toContain(`wrote ${join(etc, 'local.d/servers/slot-base.conf')} (TLS in its Storage resources, from ${join(etc, 'conf.d/servers/slot-base.conf')})`);
  expect(w.stdout).toContain(`wrote ${join(etc, 'local.d/servers/storage.conf')} (TLS in its Storage resources, from ${join(etc, 'conf.d/servers/storage.conf')})`);
  expect(['conf.d/servers/base.conf', 'conf.d/servers/slot-base.conf', 'conf.d/servers/storage.conf'].map((f) => readFileSync(join(etc, f), 'utf8'))).toEqual(rpm);
  // Idempotent: a second run changes nothing.
  const again = await cli(config);
  expect(again.stdout).toContain(`${join(etc, 'local.d/servers/storage.conf')}: unchanged`);
  // What the add-in's generator makes of it: every Storage and the server's Client resource with
  // TLS required and the director's certificate.
  const generated = (await run(cmd(join(etc, 'conf.d/bacula-dir.sh'), []), { timeoutMs: 30_000 })).stdout;
  const resources = [...generated.matchAll(/\n?(Storage|Client) \{\n([^{}]*)\n\}/g)];
  expect(resources.map((m) => `${m[1]} ${/Name = "?([^"\n]+)/.exec(m[2]!)?.[1]}`).sort()).toEqual(['Client web1', 'Storage File-1', 'Storage FileStorage-1', 'Storage Virt-1']);
  for (const m of resources) {
    expect(m[2], m[0]).toMatch(/TLS Require = yes/);
    expect(m[2], m[0]).toContain(`TLS Certificate = "${join(pkiDir, 'tls/tls-dir.crt')}"`);
    expect(m[2], m[0]).toContain(`TLS Key = "${join(pkiDir, 'tls/tls-dir.key')}"`);
  }
});
