#!/usr/bin/env node
// Hand-off for JetBackup or any "dumps only" tool: with `engine: none`, run it as
//   hooks:
//     after_backup: [["/usr/bin/node", "<pkg>/dist/hooks/dumps-handoff.js", "--", "/usr/bin/tool", "--files-from", "{list}"]]
// It checks that this run's dumps are complete (manifest.json says so), writes what to back up
// (APISCP_BACKUP_SOURCES: the sites' shadow/info, the dumps dir, …) one path per line into a
// list file, and runs the tool with `{list}` replaced by that file and `{run}` by the run dir.
// The tool must keep ACLs, xattrs and numeric ids (Fortification lives in ACLs).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { $ } from 'zx';

const dash = process.argv.indexOf('--');
const tool = dash >= 0 ? process.argv.slice(dash + 1) : [];
const runDir = process.env.APISCP_BACKUP_RUN_DIR;
const dumpsDir = process.env.APISCP_BACKUP_DUMPS_DIR;
if (tool.length === 0 || !runDir || !dumpsDir) {
  process.stderr.write('usage: dumps-handoff.js -- TOOL ARGS… ({list}, {run}), run as an apiscp-backup hook after the dumps\n');
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as { status?: string };
if (manifest.status !== 'complete') {
  process.stderr.write(`dumps-handoff: ${runDir} is not complete (status ${manifest.status}): not handing it off\n`);
  process.exit(1);
}
const list = join(dumpsDir, '.handoff.list');
const sources = (process.env.APISCP_BACKUP_SOURCES ?? '').split('\n').filter(Boolean);
writeFileSync(list, sources.join('\n') + '\n', { mode: 0o600 });
try {
  const argv = tool.map((a) => a.replaceAll('{list}', list).replaceAll('{run}', runDir));
  await $`${argv}`;
} finally {
  rmSync(list, { force: true });
}
