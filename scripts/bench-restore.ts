// Restore benchmark: `npm run bench:restore [-- --mb N --files N --repeat N --engines restic,borg,duplicity,bacula --steps --keep]`.
// One ApisCP tree whose site2 is a few hundred MB in thousands of files (lib/demo/apiscp-tree.ts
// for the shape: owners without passwd entries, ACLs, xattrs, a whiteout; then PHP-like text, media
// and a few large files), one MariaDB database of the site, `apiscp-backup run` per engine; then
// on that same snapshot, alternating, `restore site site2 --target DIR` (ours: everything a site
// restore needs) against the engine's own command extracting the site's directory (and the dumps
// run for restic, borg and Bacula, which take both in one command; duplicity restores one path per
// run, so its plain command is the site alone). Bacula: real daemons (test/harness/bacula.ts), the
// job's Full backup, then `restore site` (one restore job) against one bconsole session that marks
// the site and the run in a restore of the same JobId and waits for it, as an admin would.
// `--target` loads no database: both sides only extract (the load is `restore db`'s, timed against
// myloader in bench:dumps). Wall time (median of --repeat) and the peak RSS of the largest process
// of each (GNU time %M). The machine may be shared: repeat and read the spread. --steps: one more
// run of ours under strace (execve and exits only), each program it started with its start and
// duration: where the time beyond the extraction goes. Ends with one line:
//   RESULT restic_ratio=<n> borg_ratio=<n> duplicity_ratio=<n> bacula_ratio=<n> peak_rss_mb=<n> site_mb=<n> files=<n>
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, type LoadedConfig } from '../lib/config/load.js';
import { borgEnv } from '../lib/engine/borg.js';
import { duplicityCommonArgs } from '../lib/engine/duplicity.js';
import { resticEnv } from '../lib/engine/restic.js';
import type { EngineName } from '../lib/engine/types.js';
import { cmd, type Command } from '../lib/proc/command.js';
import { run } from '../lib/proc/run.js';
import { buildApiscpTree } from '../lib/demo/apiscp-tree.js';
import { startMariadb, type MariadbServer } from '../lib/throwaway/mariadb.js';
// The Bacula daemons as the tests start them (tsc builds this one test helper into dist/test/harness).
import { startBacula, type BaculaHarness } from '../test/harness/bacula.js';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, 'apiscp-backup.js');
const PROBE = join(here, 'bench', 'rss-probe.js');
const MB = 1024 * 1024;
const { values: flags } = parseArgs({
  options: {
    mb: { type: 'string', default: '300' },
    files: { type: 'string', default: '4000' },
    repeat: { type: 'string', default: '3' },
    engines: { type: 'string', default: 'restic,borg,duplicity,bacula' },
    steps: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const engines = flags.engines!.split(',') as EngineName[];
const repeat = Number(flags.repeat);
const work = mkdtempSync(join(tmpdir(), 'asb-bench-restore-'));
let server: MariadbServer | undefined;
const baculas: BaculaHarness[] = [];

/** A command and, for bconsole, what it reads on stdin. */
interface Timed {
  readonly command: Command;
  readonly input?: string;
}

/** Wall seconds and the peak RSS (MB) of the largest process of the tree, from GNU time. */
async function timed({ command, input }: Timed): Promise<{ s: number; rssMb: number; stdout: string }> {
  const out = join(work, 'time.out');
  const started = process.hrtime.bigint();
  const { stdout } = await run(cmd('/usr/bin/time', ['-f', '%M', '-o', out, command.file, ...command.args], { env: command.env, cwd: command.cwd }), { timeoutMs: 3_600_000, input });
  const s = Number(process.hrtime.bigint() - started) / 1e9;
  return { s, rssMb: Number(readFileSync(out, 'utf8').trim().split('\n').pop()) / 1024, stdout };
}

/**
 * `command` once under strace, tracing only execve and the exits (seccomp-bpf: every other
 * syscall runs untraced): each program it started, when (seconds from our start) and for how
 * long, and the time no child ran (our own work: start-up, hashing, moves, waits).
 */
async function steps(command: Command, dir: string): Promise<string[]> {
  const out = join(dir, 'strace.out');
  await run(cmd('strace', ['-f', '--seccomp-bpf', '-q', '-ttt', '-e', 'trace=execve', '-e', 'signal=none', '-o', out, command.file, ...command.args], { env: command.env, cwd: command.cwd }), { timeoutMs: 3_600_000 });
  const procs = new Map<string, { what: string; start: number; end?: number }>();
  let t0: number | undefined;
  let tEnd = 0;
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [pid, t, rest] = [m[1]!, Number(m[2]), m[3]!];
    t0 ??= t;
    tEnd = Math.max(tEnd, t);
    const exec = /^execve\("([^"]*)", \[(.*)\], .*= 0$/.exec(rest);
    if (exec) {
      const argv = [...exec[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) => a[1]!);
      const what = [exec[1]!.split('/').pop()!, ...argv.slice(1, 3).map((a) => (a.length > 40 ? `…${a.slice(-39)}` : a))].join(' ');
      procs.set(pid, { what, start: t });
    } else if (/^\+\+\+ exited with/.test(rest) && procs.has(pid)) procs.get(pid)!.end = t;
  }
  const start = t0 ?? 0;
  const rows = [...procs.values()].slice(1).filter((p) => !/^(time|strace)\b/.test(p.what));
  // Our own time: when none of the programs we started ran.
  const spans = rows.map((p) => [p.start, p.end ?? tEnd] as const).sort((a, b) => a[0] - b[0]);
  let busy = 0;
  let reach = start;
  for (const [a, b] of spans) {
    if (b <= reach) continue;
    busy += b - Math.max(a, reach);
    reach = b;
  }
  return [
    ...rows.filter((p) => (p.end ?? tEnd) - p.start >= 0.05).map((p) => `    ${fmt(p.start - start).padStart(6)} s +${fmt((p.end ?? tEnd) - p.start).padStart(6)} s  ${p.what}`),
    `    total ${fmt(tEnd - start)} s, of which no child ran ${fmt(tEnd - start - busy)} s (programs under 0.05 s not listed)`,
  ];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number): string => n.toFixed(n < 10 ? 2 : 1);

/** site2 made realistic: a WordPress-like text tree, media, a few large files (uploads, a backup zip). */
function growSite(shadow: string, uid: number, mb: number, files: number): { bytes: number; files: number } {
  const html = join(shadow, 'var/www/html/wp');
  let bytes = 0;
  let count = 0;
  const put = (path: string, data: Buffer): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, data, { mode: 0o644 });
    chownSync(path, uid, uid);
    bytes += data.length;
    count++;
  };
  const text = Math.floor(files * 0.85);
  const media = files - text;
  // Text: 85% of the files, ~10% of the bytes (compressible, like PHP and CSS).
  const line = (i: number): string => `<?php /* ${i} */ function f_${i}($a) { return apply_filters('the_content_${i % 97}', $a . '${randomBytes(6).toString('hex')}'); }\n`;
  for (let i = 0; i < text; i++) {
    const lines = 20 + ((i * 7919) % 200);
    put(join(html, `wp-content/plugins/p${i % 40}/inc/d${i % 13}/file-${i}.php`), Buffer.from(Array.from({ length: lines }, (_, k) => line(i * 1000 + k)).join('')));
  }
  // Media: random (incompressible) bytes; a few large ones take half of what is left.
  const rest = mb * MB - bytes;
  const large = Math.max(1, Math.round(media / 100));
  const largeSize = Math.floor(rest / 2 / large);
  for (let i = 0; i < large; i++) put(join(html, `wp-content/uploads/backup-${i}.zip`), randomBytes(largeSize));
  const small = media - large;
  const mediaSize = Math.floor((mb * MB - bytes) / Math.max(1, small));
  for (let i = 0; i < small; i++) put(join(html, `wp-content/uploads/2026/${String(1 + (i % 12)).padStart(2, '0')}/img-${i}.jpg`), randomBytes(mediaSize));
  return { bytes, files: count };
}

function engineSection(engine: EngineName, dir: string): Record<string, unknown> {
  const secret = join(dir, 'secret');
  writeFileSync(secret, 'bench restore pass\n', { mode: 0o600 });
  const repo = join(dir, 'repo');
  if (engine === 'restic') return { restic: { repository: repo, password_file: secret, keep: { last: 100 } } };
  if (engine === 'borg') return { borg: { repository: repo, passphrase_file: secret, keep: { last: 100 } } };
  if (engine === 'bacula') return {};
  return { duplicity: { target: `file://${repo}`, passphrase_file: secret } };
}

/** Bacula quotes: "…" with no escapes (the bench's paths hold neither `"` nor a newline). */
const bq = (v: string): string => `"${v}"`;

/** The engine's own command extracting the site (and, where one command can, the dumps run) from the snapshot `point`. */
function plainCommand(loaded: LoadedConfig, engine: EngineName, point: { id: string; time: string }, site: string, runDir: string, into: string): Timed {
  if (engine === 'restic') return { command: cmd('restic', ['restore', point.id, '--target', into, '--include', site, '--include', runDir], { env: { ...process.env, ...resticEnv(loaded) } as Record<string, string> }) };
  if (engine === 'borg') return { command: cmd('borg', ['extract', '--numeric-ids', `::${point.id}`, site.slice(1), runDir.slice(1)], { env: { ...process.env, ...borgEnv(loaded) } as Record<string, string>, cwd: into }) };
  if (engine === 'bacula') {
    // One bconsole session, as an admin types it: the restore of that JobId with the site and the
    // run marked, then `wait` until the restore job has ended.
    const b = loaded.config.bacula;
    const mark = (p: string): string[] => [`cd ${bq(dirname(p) + '/')}`, `mark ${bq(p.slice(p.lastIndexOf('/') + 1))}`];
    const input = [`restore jobid=${point.id} client=${bq(b.client)} where=${bq(into)}`, ...mark(site), ...mark(runDir), 'done', 'yes', 'wait', 'quit', ''].join('\n');
    return { command: cmd('bconsole', ['-n', '-c', b.bconsole_config], { env: process.env as Record<string, string> }), input };
  }
  const epoch = String(Math.floor(Date.parse(point.time) / 1000));
  const passphrase = readFileSync(loaded.config.duplicity.passphrase_file!, 'utf8').replace(/\n$/, '');
  return {
    command: cmd('duplicity', ['restore', '--file-to-restore', site.slice(1), '-t', epoch, ...duplicityCommonArgs(loaded), loaded.config.duplicity.target!, join(into, 'site')], {
      env: { ...process.env, PASSPHRASE: passphrase } as Record<string, string>,
    }),
  };
}

/** The plain restore counts only when its job ended well: bconsole exits 0 whatever happened. */
async function baculaRestoreOk(loaded: LoadedConfig, session: string): Promise<void> {
  const jobId = /Job queued\. JobId=(\d+)/.exec(session)?.[1];
  if (!jobId) throw new Error(`bconsole queued no restore job:\n${session.slice(-2000)}`);
  const out = (await run(cmd('bconsole', ['-n', '-c', loaded.config.bacula.bconsole_config]), { input: `llist jobid=${jobId}\nquit\n` })).stdout;
  const status = /jobstatus:\s*(\S)/i.exec(out)?.[1];
  if (status !== 'T') throw new Error(`Bacula restore job ${jobId} ended with JobStatus ${status ?? '?'}:\n${out.slice(-2000)}`);
}

/** The config of one engine's section; Bacula's daemons started first, with our job in the director. */
async function engineConfig(engine: EngineName, dir: string, base: Record<string, unknown>): Promise<string> {
  const config = join(dir, 'config.json');
  const write = (extra: Record<string, unknown>): void => writeFileSync(config, JSON.stringify({ ...base, ...engineSection(engine, dir), ...extra }, null, 2), { mode: 0o600 });
  write({});
  if (engine !== 'bacula') return config;
  const fragment = (await run(cmd(process.execPath, [CLI, '-c', config, 'bacula', 'config', '--node', process.execPath, '--entry', CLI]))).stdout;
  const h = await startBacula({ baseDir: join(dir, 'bacula'), extraDirectorConfig: fragment, keep: flags.keep });
  baculas.push(h);
  write({ bacula: { bconsole_config: h.bconsoleConfigFile } });
  return config;
}

try {
  server = await startMariadb({ baseDir: work });
  const ratios: Record<string, number> = {};
  let peakRss = 0;
  let siteMb = 0;
  let siteFiles = 0;
  console.log(`load before: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
  console.log('restore site --target loads no database: both sides only extract (and ours checks the dumps\' sha256)\n');
  for (const engine of engines) {
    const dir = join(work, engine);
    const root = join(dir, 'root');
    mkdirSync(dir, { recursive: true });
    const tree = await buildApiscpTree(root, { sites: 3 });
    const site2 = tree.sites.find((s) => s.id === 'site2')!;
    const grown = growSite(join(tree.home, 'site2/shadow'), site2.uid, Number(flags.mb), Number(flags.files));
    siteMb = grown.bytes / MB;
    siteFiles = grown.files;
    // The site's database: the data directory's symlink into the site says whose it is (no panel).
    await server.sql('CREATE DATABASE IF NOT EXISTS site2_wp');
    await server.sql('CREATE TABLE IF NOT EXISTS posts (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB; INSERT IGNORE INTO posts SELECT seq, REPEAT(MD5(seq), 16) FROM seq_1_to_40000;', 'site2_wp');
    mkdirSync(join(root, 'var/lib/mysql'), { recursive: true });
    symlinkSync('/home/virtual/site2/shadow/var/lib/mysql/site2_wp', join(root, 'var/lib/mysql/site2_wp'));
    const config = await engineConfig(engine, dir, {
      engine,
      paths: { root },
      panel: { enabled: false },
      databases: { method: 'native', postgresql: { enabled: false }, mysql: { enabled: true, socket: server.socket, defaults_file: join(root, 'no-my.cnf'), include: ['site2_wp'] } },
    });
    const loaded = loadConfig({ file: config });
    if (engine !== 'duplicity' && engine !== 'bacula') await run(cmd(process.execPath, [CLI, '-c', config, 'repo-init']));
    const t = process.hrtime.bigint();
    if (engine === 'bacula') {
      const job = await baculas.at(-1)!.runJob(loaded.config.bacula.job, 'Full');
      if (job.status !== 'T') throw new Error(`the Bacula backup job ended ${job.status}:\n${job.log}`);
    } else await timed({ command: cmd(process.execPath, [CLI, '-c', config, 'run']) });
    const backupS = Number(process.hrtime.bigint() - t) / 1e9;
    const listed = JSON.parse((await run(cmd(process.execPath, [CLI, '-c', config, '--json', 'list']))).stdout) as { local: { runId: string }[]; backups: { id: string; time: string }[] };
    const point = listed.backups[0]!;
    const siteDir = join(tree.home, 'site2');
    const runDir = join(loaded.paths.dumpsDir, listed.local[0]!.runId);
    console.log(`${engine}: site2 ${fmt(siteMb)} MB in ${siteFiles} files, backed up in ${fmt(backupS)} s; backup ${point.id}`);
    const oursCommand = (into: string): Command =>
      cmd(process.execPath, ['--import', pathToFileURL(PROBE).href, CLI, '-c', config, 'restore', 'site', 'site2', '--target', into], { env: { ...process.env, ASB_BENCH_PROBE: join(dir, 'probe.json') } as Record<string, string> });
    const ours: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < repeat; i++) {
      // Alternate who goes first: the page cache and the neighbours favour neither.
      for (const who of i % 2 === 0 ? (['ours', 'plain'] as const) : (['plain', 'ours'] as const)) {
        const into = mkdtempSync(join(dir, `${who}-`));
        const r = await timed(who === 'ours' ? { command: oursCommand(into) } : plainCommand(loaded, engine, point, siteDir, runDir, into));
        if (engine === 'bacula' && who === 'plain') await baculaRestoreOk(loaded, r.stdout);
        // Both sides brought the site: a side that restored nothing would win.
        const brought = join(into, who === 'ours' ? 'site2' : engine === 'duplicity' ? 'site' : siteDir.slice(1), 'shadow/var/www/html/wp');
        if (!existsSync(brought)) throw new Error(`${engine} ${who}: ${brought} was not restored`);
        (who === 'ours' ? ours : plain).push(r.s);
        peakRss = who === 'ours' ? Math.max(peakRss, r.rssMb) : peakRss;
        console.log(`  ${who.padEnd(5)} ${fmt(r.s)} s, peak RSS ${Math.round(r.rssMb)} MB`);
        rmSync(into, { recursive: true, force: true });
      }
    }
    ratios[engine] = median(ours) / median(plain);
    console.log(`  ${engine}: restore site ${fmt(median(ours))} s vs plain ${fmt(median(plain))} s (median of ${repeat}) = ${ratios[engine]!.toFixed(2)}×; spread ours ${fmt(Math.min(...ours))}–${fmt(Math.max(...ours))} s, plain ${fmt(Math.min(...plain))}–${fmt(Math.max(...plain))} s`);
    if (flags.steps) {
      const into = mkdtempSync(join(dir, 'steps-'));
      console.log(`  ours, step by step (strace):\n${(await steps(oursCommand(into), dir)).join('\n')}`);
      rmSync(into, { recursive: true, force: true });
    }
    console.log(`  load now: ${readFileSync('/proc/loadavg', 'utf8').trim()}\n`);
    if (engine === 'bacula') await baculas.pop()!.stop();
    if (!flags.keep) rmSync(dir, { recursive: true, force: true });
  }
  const parts = engines.map((e) => `${e}_ratio=${ratios[e]!.toFixed(2)}`);
  console.log(`RESULT ${parts.join(' ')} peak_rss_mb=${Math.round(peakRss)} site_mb=${Math.round(siteMb)} files=${siteFiles}`);
} finally {
  for (const h of baculas) await h.stop().catch(() => undefined);
  if (flags.keep) console.log(`--keep: files in ${work}`);
  else {
    await server?.destroy().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}
