// Verify benchmark: `npm run bench:verify [-- --dbs N --mb N --big-mb N --sample N --keep]`.
// Starts a throwaway MariaDB, generates the dump bench's hosting-like data inside it (a few
// large databases, many small, one ≥1 GB), then through the built CLI:
//   dump            what the inventory adds to the dumps (inventory ms vs dump ms, from the manifest)
//   verify --all    every database loaded into throwaway servers and compared: seconds per GB
//   verify --sample the nightly default, N databases
// Ends with one line:
//   RESULT verify_s_per_gb=<n> inventory_pct=<n> nightly_sample_s=<n> dbs=<n> data_mb=<n>
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Manifest } from '../lib/model/manifest.js';
import { cmd } from '../lib/proc/command.js';
import { run } from '../lib/proc/run.js';
import { startMariadb, type MariadbServer } from '../lib/throwaway/mariadb.js';
import { bigDatabase, generate, planDatabases } from './bench/generate.js';
import { writeConfig } from './bench/measure.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), 'apiscp-backup.js');
const { values: flags } = parseArgs({
  options: {
    dbs: { type: 'string', default: '20' },
    mb: { type: 'string', default: '300' },
    'big-mb': { type: 'string', default: '1100' },
    sample: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
  },
});
const work = mkdtempSync(join(tmpdir(), 'asb-bench-verify-'));
let server: MariadbServer | undefined;

async function cli(configFile: string, args: string[]): Promise<number> {
  const started = Date.now();
  await run(cmd(process.execPath, [CLI, '-c', configFile, ...args]), { timeoutMs: 6 * 3_600_000 });
  return (Date.now() - started) / 1000;
}

try {
  server = await startMariadb({ baseDir: work, serverArgs: ['--innodb-buffer-pool-size=1G'] });
  const dbs = [bigDatabase(Number(flags['big-mb'])), ...planDatabases(Number(flags.dbs), Number(flags.mb))];
  const genStarted = Date.now();
  await generate(server, dbs);
  const dataMb = dbs.reduce((n, d) => n + d.dataBytes, 0) / 1024 / 1024;
  console.log(`generated ${dbs.length} databases, ${dataMb.toFixed(0)} MB of table data in ${((Date.now() - genStarted) / 1000).toFixed(0)} s`);
  const root = join(work, 'root');
  const configFile = join(work, 'config.json');
  writeConfig(configFile, root, server.socket, dbs.map((d) => d.name));

  const dumpS = await cli(configFile, ['dump']);
  const runDir = join(root, 'var/backup/apiscp-backup/latest');
  const manifest = JSON.parse(readFileSync(join(runDir, 'manifest.json'), 'utf8')) as Manifest;
  const dbEntries = manifest.entries.filter((e) => e.object === 'database');
  const inventoryMs = dbEntries.reduce((n, e) => n + (e.inventory?.ms ?? 0), 0);
  const dumpMs = dbEntries.reduce((n, e) => n + e.durationMs, 0);
  const big = dbEntries.find((e) => e.database === 'bigsite_wp');
  console.log(`dump: ${dumpS.toFixed(1)} s wall; inventory ${inventoryMs} ms of ${dumpMs} ms summed per-database time (${((100 * inventoryMs) / dumpMs).toFixed(1)}%); bigsite_wp inventory ${big?.inventory?.ms} ms of ${big?.durationMs} ms`);

  const allS = await cli(configFile, ['verify', '--all']);
  const perGb = allS / (dataMb / 1024);
  console.log(`verify --all: ${allS.toFixed(1)} s for ${dataMb.toFixed(0)} MB of table data = ${perGb.toFixed(1)} s/GB`);
  const sampleS = await cli(configFile, ['verify', '--sample', flags.sample!]);
  console.log(`verify --sample ${flags.sample} (rotation, the nightly default): ${sampleS.toFixed(1)} s`);
  console.log(`RESULT verify_s_per_gb=${perGb.toFixed(1)} inventory_pct=${((100 * inventoryMs) / dumpMs).toFixed(1)} nightly_sample_s=${sampleS.toFixed(1)} dbs=${dbs.length} data_mb=${dataMb.toFixed(0)}`);
} finally {
  if (flags.keep) console.log(`--keep: files in ${work}`);
  else {
    await server?.destroy().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}
