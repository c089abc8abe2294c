#!/usr/bin/env node
// Stand-in for /usr/local/apnscp/bin/scripts/backup_dbs.php. backup_dbs.php beside this file is a
// symlink to it: node picks the module format from the real path's extension, and a `.php` file
// cannot be loaded as ESM inside this `"type": "module"` package. See README.md.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const env = process.env;
const argv = process.argv.slice(2);
const force = argv.includes('--force');

function log(entry) {
  if (!env.FAKE_APISCP_LOG) return;
  // Best effort: a caller without access to the log (the non-root refusal test) still gets
  // the panel's own answer rather than a stack trace from the stand-in.
  try {
    appendFileSync(env.FAKE_APISCP_LOG, JSON.stringify({ tool: 'backup_dbs.php', time: new Date().toISOString(), pid: process.pid, argv, ...entry }) + '\n');
  } catch (err) {
    process.stderr.write(`stand-in: cannot write ${env.FAKE_APISCP_LOG}: ${err.code ?? err.message}\n`);
  }
}

function die(message, code) {
  process.stderr.write(`backup_dbs.php: ${message}\n`);
  process.exit(code);
}

if (process.getuid?.() !== 0 && env.FAKE_APISCP_ALLOW_NONROOT !== '1') die('must be run as root', 1);
if (!env.FAKE_APISCP_STATE) die('FAKE_APISCP_STATE is not set', 2);
// Never default to /home/virtual: a test must not write into a real server's sites.
if (!env.FAKE_APISCP_HOME) die('FAKE_APISCP_HOME is not set', 2);
const state = JSON.parse(readFileSync(env.FAKE_APISCP_STATE, 'utf8'));
const quirks = state.quirks ?? {};

if (quirks.backupDbsHangMs) {
  // The real script forks dump tools; a hung export leaves a tree behind, which the caller's
  // timeout must kill as a whole. The grandchild's pid is logged so tests can check it is gone.
  const child = spawn(process.execPath, ['-e', `setTimeout(() => {}, ${Number(quirks.backupDbsHangMs)})`], { stdio: 'ignore' });
  log({ event: 'hang', childPid: child.pid, hangMs: quirks.backupDbsHangMs });
  await new Promise((r) => setTimeout(r, Number(quirks.backupDbsHangMs)));
} else {
  log({ event: 'start', force });
}

const stamp = new Date().toISOString().slice(0, 10).replace(/-/g, '');
const written = [];
for (const [siteId, site] of Object.entries(state.sites ?? {})) {
  const home = join(env.FAKE_APISCP_HOME, siteId, 'shadow', 'home', site.admin ?? 'admin');
  for (const [kind, dir] of [['mysql', 'mysql_backups'], ['pgsql', 'pgsql_backups']]) {
    for (const db of site[kind] ?? []) {
      // Without --force the real script only exports databases whose schedule is due; the
      // stand-in treats a database as due when the site says so (`due: [db…]`, default all).
      if (!force && Array.isArray(site.due) && !site.due.includes(db)) continue;
      const target = join(home, dir);
      mkdirSync(target, { recursive: true });
      const file = join(target, `${db}-${stamp}.sql`);
      // `backupDbsEmpty: [db]`: the export of these databases is cut off at 0 bytes.
      const empty = (quirks.backupDbsEmpty ?? []).includes(db);
      writeFileSync(file, empty ? '' : `-- stand-in ${kind} export of ${db} (${siteId})\nCREATE TABLE t (id int);\n`);
      written.push(file);
    }
  }
}
log({ event: 'done', written });

if (quirks.backupDbsErrorBlock) {
  // A panel script reports through the same error reporter as cpcmd (inferred), and exits 0.
  const dashes = '-'.repeat(40);
  const m = quirks.backupDbsErrorBlock;
  process.stderr.write(`ERROR   : ${m}\n${dashes}\nMESSAGE SUMMARY\nReporter level: ERROR\n${dashes}\nERROR: ${m}\n`);
}
if (quirks.backupDbsExit) {
  process.stderr.write(`PHP Fatal error:  export failed (stand-in exit ${quirks.backupDbsExit})\n`);
  process.exit(Number(quirks.backupDbsExit));
}
