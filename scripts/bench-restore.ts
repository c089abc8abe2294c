// Restore benchmark: `npm run bench:restore [-- --mb N --files N --repeat N --engines restic,borg,duplicity --keep]`.
// One ApisCP tree whose site2 is a few hundred MB in thousands of files (lib/demo/apiscp-tree.ts
// for the shape: owners without passwd entries, ACLs, xattrs, a whiteout; then PHP-like text, media
// and a few large files), one MariaDB database of the site, `apiscp-backup run` per engine; then
// on that same snapshot, alternating, `restore site site2 --target DIR` (ours: everything a site
// restore needs) against the engine's own command extracting the site's directory (and the dumps
// run for restic and borg, which take both in one command; duplicity restores one path per run,
// so its plain command is the site alone). Wall time (median of --repeat) and the peak RSS of the
// largest process of each (GNU time %M). The machine may be shared: repeat and read the spread.
// Ends with one line:
//   RESULT restic_ratio=<n> borg_ratio=<n> duplicity_ratio=<n> peak_rss_mb=<n> site_mb=<n> files=<n>
import { randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, 'apiscp-backup.js');
const PROBE = join(here, 'bench', 'rss-probe.js');
const MB = 1024 * 1024;
const { values: flags } = parseArgs({
  options: {
    mb: { type: 'string', default: '300' },
    files: { type: 'string', default: '4000' },
    repeat: { type: 'string', default: '3' },
    engines: { type: 'string', default: 'restic,borg,duplicity' },
    keep: { type: 'boolean', default: false },
  },
});
const engines = flags.engines!.split(',') as EngineName[];
const repeat = Number(flags.repeat);
const work = mkdtempSync(join(tmpdir(), 'asb-bench-restore-'));
let server: MariadbServer | undefined;

/** Wall seconds and the peak RSS (MB) of the largest process of the tree, from GNU time. */
async function timed(command: Command): Promise<{ s: number; rssMb: number }> {
  const out = join(work, 'time.out');
  const started = process.hrtime.bigint();
  await run(cmd('/usr/bin/time', ['-f', '%M', '-o', out, command.file, ...command.args], { env: command.env, cwd: command.cwd }), { timeoutMs: 3_600_000 });
  const s = Number(process.hrtime.bigint() - started) / 1e9;
  return { s, rssMb: Number(readFileSync(out, 'utf8').trim().split('\n').pop()) / 1024 };
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
  return { duplicity: { target: `file://${repo}`, passphrase_file: secret } };
}

/** The engine's own command extracting the site (and, where one command can, the dumps run) from the snapshot `point`. */
function plainCommand(loaded: LoadedConfig, engine: EngineName, point: { id: string; time: string }, site: string, runDir: string, into: string): Command {
  if (engine === 'restic') return cmd('restic', ['restore', point.id, '--target', into, '--include', site, '--include', runDir], { env: { ...process.env, ...resticEnv(loaded) } as Record<string, string> });
  if (engine === 'borg') return cmd('borg', ['extract', '--numeric-ids', `::${point.id}`, site.slice(1), runDir.slice(1)], { env: { ...process.env, ...borgEnv(loaded) } as Record<string, string>, cwd: into });
  const epoch = String(Math.floor(Date.parse(point.time) / 1000));
  const passphrase = readFileSync(loaded.config.duplicity.passphrase_file!, 'utf8').replace(/\n$/, '');
  return cmd('duplicity', ['restore', '--file-to-restore', site.slice(1), '-t', epoch, ...duplicityCommonArgs(loaded), loaded.config.duplicity.target!, join(into, 'site')], {
    env: { ...process.env, PASSPHRASE: passphrase } as Record<string, string>,
  });
}

try {
  server = await startMariadb({ baseDir: work });
  const ratios: Record<string, number> = {};
  let peakRss = 0;
  let siteMb = 0;
  let siteFiles = 0;
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
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({ engine, paths: { root }, panel: { enabled: false }, databases: { method: 'native', postgresql: { enabled: false }, mysql: { enabled: true, socket: server.socket, defaults_file: join(root, 'no-my.cnf'), include: ['site2_wp'] } }, ...engineSection(engine, dir) }, null, 2),
      { mode: 0o600 },
    );
    const loaded = loadConfig({ file: config });
    if (engine !== 'duplicity') await run(cmd(process.execPath, [CLI, '-c', config, 'repo-init']));
    const backup = await timed(cmd(process.execPath, [CLI, '-c', config, 'run']));
    const listed = JSON.parse((await run(cmd(process.execPath, [CLI, '-c', config, '--json', 'list']))).stdout) as { local: { runId: string }[]; backups: { id: string; time: string }[] };
    const point = listed.backups[0]!;
    const siteDir = join(tree.home, 'site2');
    const runDir = join(loaded.paths.dumpsDir, listed.local[0]!.runId);
    console.log(`${engine}: site2 ${fmt(siteMb)} MB in ${siteFiles} files, backed up (run) in ${fmt(backup.s)} s; snapshot ${point.id}`);
    const ours: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < repeat; i++) {
      // Alternate who goes first: the page cache and the neighbours favour neither.
      for (const who of i % 2 === 0 ? (['ours', 'plain'] as const) : (['plain', 'ours'] as const)) {
        const into = mkdtempSync(join(dir, `${who}-`));
        const r =
          who === 'ours'
            ? await timed(cmd(process.execPath, ['--import', pathToFileURL(PROBE).href, CLI, '-c', config, 'restore', 'site', 'site2', '--target', into], { env: { ...process.env, ASB_BENCH_PROBE: join(dir, 'probe.json') } as Record<string, string> }))
            : await timed(plainCommand(loaded, engine, point, siteDir, runDir, into));
        (who === 'ours' ? ours : plain).push(r.s);
        peakRss = who === 'ours' ? Math.max(peakRss, r.rssMb) : peakRss;
        console.log(`  ${who.padEnd(5)} ${fmt(r.s)} s, peak RSS ${Math.round(r.rssMb)} MB`);
        rmSync(into, { recursive: true, force: true });
      }
    }
    ratios[engine] = median(ours) / median(plain);
    console.log(`  ${engine}: restore site ${fmt(median(ours))} s vs plain ${fmt(median(plain))} s (median of ${repeat}) = ${ratios[engine]!.toFixed(2)}×; spread ours ${fmt(Math.min(...ours))}–${fmt(Math.max(...ours))} s, plain ${fmt(Math.min(...plain))}–${fmt(Math.max(...plain))} s\n`);
    if (!flags.keep) rmSync(dir, { recursive: true, force: true });
  }
  const parts = engines.map((e) => `${e}_ratio=${ratios[e]!.toFixed(2)}`);
  console.log(`RESULT ${parts.join(' ')} peak_rss_mb=${Math.round(peakRss)} site_mb=${Math.round(siteMb)} files=${siteFiles}`);
} finally {
  if (flags.keep) console.log(`--keep: files in ${work}`);
  else {
    await server?.destroy().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}
