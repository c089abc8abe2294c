import { readManifestFile } from '../dumps/manifest-file.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { loadConfig } from '../config/load.js';
import { readVerifyState, verifyStateFile } from '../model/verify-state.js';
import { getEngine } from '../engine/index.js';
import type { EngineName } from '../engine/types.js';
import { BackupError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { RunState } from '../report/run-state.js';
import { bytes } from '../report/status.js';
import { cmd } from '../proc/command.js';
import { run } from '../proc/run.js';
import { anyExitCode } from '../proc/exit-status.js';
import { snapshotTree } from './apiscp-tree.js';
import { checksums, databaseEntries, loadDump, mysqlChecksums } from './db-checks.js';
import { preflight } from './preflight.js';
import { buildDemoSandbox, type DemoSandbox } from './sandbox.js';
import { packagePaths } from '../package-paths.js';

const CRON_ENV = { PATH: '/sbin:/bin:/usr/sbin:/usr/bin', HOME: '/root', SHELL: '/bin/sh', LOGNAME: 'root' };

export interface DemoOptions {
  readonly engine: EngineName;
  readonly keep: boolean;
  readonly out: (line: string) => void;
}

/**
 * The main job on a built-in sandbox, as an admin would do it: install under a root, point the
 * config at the servers, let run-parts run the nightly entry with cron's environment, then
 * restore the backup and prove it: the tree (content, owners, ACLs, xattrs) and every database.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { engine, out } = options;
  preflight(engine);
  const cli = join(packagePaths().dist, 'scripts', 'apiscp-backup.js');
  const root = mkdtempSync(join(tmpdir(), 'apiscp-demo-'));
  const timer = stopwatch();
  let sandbox: DemoSandbox | undefined;
  let failures = 0;
  const check = (ok: boolean, text: string): void => {
    if (!ok) failures++;
    out(`${ok ? '  ok  ' : '  FAIL'} ${text}`);
  };
  out(`apiscp-backup demo: engine ${engine}, sandbox ${root}${options.keep ? ' (kept)' : ' (removed at the end, --keep keeps it)'}`);
  try {
    sandbox = await buildDemoSandbox(root);
    out(`\n1. sandbox      ${sandbox.tree.sites.length} ApisCP sites with ACLs and xattrs, MariaDB ${sandbox.mysql.version.split('-')[0]} and PostgreSQL ${sandbox.postgresql.version.split(' ')[0]}, ${sandbox.databases.length} databases  ${timer()}`);

    const installed = await run(cmd(process.execPath, [cli, '--root', root, 'install', '--engine', engine], { env: { CPCMD: sandbox.cpcmd } })).catch((e: BackupError) => e);
    if (installed instanceof BackupError) throw installed;
    const configFile = join(root, 'etc/apiscp-backup/config.yaml');
    writeDemoConfig(configFile, sandbox, engine);
    out(`2. install      cron entry ${join(root, 'etc/cron.daily/apiscp-backup')}, config ${configFile}`);
    if (getEngine(engine).init) {
      const created = await run(cmd(process.execPath, [cli, '-c', configFile, 'repo-init']));
      out(`                ${created.stdout.trim()} (once, before the first backup)`);
    }
    out(`                ${firstLine(installed.stdout, /scope|export/i) ?? 'panel exports scope switched off'}  ${timer()}`);

    const nightly = await run(cmd('run-parts', ['--report', join(root, 'etc/cron.daily')], { env: CRON_ENV, inheritEnv: false }), { exitClass: anyExitCode });
    const state = JSON.parse(readFileSync(join(root, 'var/lib/apiscp-backup/status.json'), 'utf8')) as RunState;
    out(`3. nightly      run-parts ran the entry with cron's environment (PATH=${CRON_ENV.PATH})  ${timer()}`);
    check(nightly.exitCode === 0 && nightly.stdout.trim() === '' && nightly.stderr.trim() === '', `silent on success and exit 0${nightly.stdout || nightly.stderr ? `; it printed:\n${nightly.stdout}${nightly.stderr}` : ''}`);
    check(state.status === 'ok', `run state: ${state.status}, ${state.dumps?.ok ?? 0} dumps (${bytes(state.dumps?.bytes ?? 0)}), backup ${state.backup?.status ?? 'none'} (${state.level ?? '-'})`);
    const scope = JSON.parse(readFileSync(sandbox.panelState, 'utf8')) as { scopes: Record<string, unknown> };
    check(scope.scopes['backups.automatic-database-exports'] === false, 'the panel\'s own nightly exports are off (backups.automatic-database-exports = false)');
    const verified = readVerifyState(verifyStateFile(join(root, 'var/lib/apiscp-backup')))?.lastRun;
    check(verified?.trigger === 'nightly' && verified.runId === state.runId && verified.failed === 0 && verified.errors === 0 && verified.checked > 0, `nightly verification after the backup: ${verified ? `${verified.checked} dump(s) checked, ${verified.failed} failed (loaded into throwaway servers, compared with the server's inventory)` : 'did not run'}`);

    const loaded = loadConfig({ file: configFile });
    // A hacked site: files deleted and added, its shop database dropped. `restore site` puts it back.
    const site = 'site2';
    const rel = sandbox.tree.included.filter((p) => p.startsWith(`home/virtual/${site}/`));
    const others = sandbox.tree.included.filter((p) => p.startsWith('home/virtual/') && !p.startsWith(`home/virtual/${site}/`));
    const [before, beforeOthers] = await Promise.all([snapshotTree(root, rel), snapshotTree(root, others)]);
    const shopBefore = await mysqlChecksums(sandbox.mysql, 'site2_shop');
    const html = join(sandbox.tree.home, site, 'shadow/var/www/html');
    rmSync(join(html, 'index.html'));
    writeFileSync(join(html, 'shell.php'), '<?php system($_GET["c"]);\n');
    await sandbox.mysql.sql('DROP DATABASE site2_shop');
    const restored = await run(cmd(process.execPath, [cli, '-c', configFile, 'restore', 'site', site, '--in-place', '--exact']), { exitClass: anyExitCode });
    out(`4. restore      ${site} hacked (index.html deleted, shell.php added, site2_shop dropped), then \`apiscp-backup restore site ${site} --in-place --exact\`  ${timer()}`);
    for (const line of restored.stdout.trim().split('\n')) out(`                ${line}`);
    check(restored.exitCode === 0, `restore site exited ${restored.exitCode}${restored.exitCode ? `: ${restored.stderr.trim()}` : ''}`);

    const after = await snapshotTree(root, rel);
    const differing = rel.filter((p) => JSON.stringify(before.get(p)) !== JSON.stringify(after.get(p)));
    check(differing.length === 0 && !existsSync(join(html, 'shell.php')), `${site} files: ${rel.length - differing.length}/${rel.length} paths as in the backup (content, mode, owner, symlinks, ACLs, xattrs, whiteouts), shell.php removed${differing.length ? `; differ: ${differing.slice(0, 5).join(', ')}` : ''}`);
    const afterOthers = await snapshotTree(root, others);
    check(others.every((p) => JSON.stringify(beforeOthers.get(p)) === JSON.stringify(afterOthers.get(p))), 'the other sites were not touched');
    check(JSON.stringify(await mysqlChecksums(sandbox.mysql, 'site2_shop').catch(() => ({}))) === JSON.stringify(shopBefore), 'site2_shop: row checksums as before it was dropped');

    // Every other dump loads too: into fresh databases, compared row for row.
    const runDir = join(loaded.paths.dumpsDir, 'latest');
    const manifest = readManifestFile(runDir);
    let same = 0;
    const entries = databaseEntries(manifest);
    for (const entry of entries) {
      const fresh = `restored_${entry.database}`;
      await loadDump(entry, runDir, sandbox, fresh);
      const [a, b] = await Promise.all([checksums(entry.kind, sandbox, entry.database!), checksums(entry.kind, sandbox, fresh)]);
      const ok = JSON.stringify(a) === JSON.stringify(b);
      if (ok) same++;
      out(`                ${entry.site}/${entry.kind}/${entry.database}: ${bytes(entry.bytes ?? 0)}, ${entry.lockMode ?? ''}, ${Object.keys(a).length} table(s) ${ok ? 'identical' : 'DIFFER'}`);
    }
    const expected = sandbox.databases.length;
    check(same === entries.length && entries.length >= expected, `databases: ${same}/${entries.length} restored dumps load into fresh databases with identical row checksums`);
    out(`5. verified     ${timer()}`);
    out(failures === 0 ? '\nRESULT demo ok: dumped, backed up, restored and verified.' : `\nRESULT demo FAILED: ${failures} check(s) failed (sandbox kept at ${root})`);
    return failures === 0 ? ExitCode.OK : ExitCode.DUMP_FAILED;
  } finally {
    await sandbox?.stop();
    if (!options.keep && failures === 0) rmSync(root, { recursive: true, force: true });
  }
}

/** What an admin edits after install: where the servers, the panel and the backup target are. */
function writeDemoConfig(file: string, sandbox: DemoSandbox, engine: EngineName): void {
  const doc = parseDocument(readFileSync(file, 'utf8'));
  const secret = (name: string): string => {
    const f = join(sandbox.root, 'etc/apiscp-backup', name);
    writeFileSync(f, `demo-${Math.random().toString(36).slice(2)}\n`, { mode: 0o600 });
    return f;
  };
  doc.setIn(['databases', 'mysql', 'socket'], sandbox.mysql.socket);
  doc.setIn(['databases', 'postgresql', 'host'], sandbox.postgresql.socketDir);
  doc.setIn(['databases', 'postgresql', 'port'], sandbox.postgresql.port);
  doc.setIn(['panel', 'cpcmd'], sandbox.cpcmd);
  doc.setIn(['databases', 'apnscp', 'php'], '/bin/sh');
  doc.setIn(['databases', 'apnscp', 'script'], sandbox.backupDbs);
  doc.setIn(['monitor', 'prometheus_textfile'], '/var/lib/node_exporter/apiscp_backup.prom');
  if (engine === 'duplicity') {
    doc.setIn(['duplicity', 'target'], `file://${join(sandbox.root, 'backup/duplicity')}`);
    doc.setIn(['duplicity', 'passphrase_file'], secret('duplicity.passphrase'));
  } else if (engine === 'restic') {
    doc.setIn(['restic', 'repository'], join(sandbox.root, 'backup/restic'));
    doc.setIn(['restic', 'password_file'], secret('restic.password'));
  } else if (engine === 'borg') {
    doc.setIn(['borg', 'repository'], join(sandbox.root, 'backup/borg'));
    doc.setIn(['borg', 'passphrase_file'], secret('borg.passphrase'));
  }
  writeFileSync(file, doc.toString(), { mode: 0o600 });
}

function stopwatch(): () => string {
  let last = Date.now();
  return () => {
    const now = Date.now();
    const s = ((now - last) / 1000).toFixed(1);
    last = now;
    return `(${s} s)`;
  };
}

function firstLine(text: string, re: RegExp): string | undefined {
  return text.split('\n').find((l) => re.test(l))?.trim();
}

