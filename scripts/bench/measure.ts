import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cmd, quote } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { whichSystem } from '../../lib/proc/which.js';
import type { BenchDb } from './generate.js';

/** One timed measurement: wall time and where the CPU went. */
export interface Sample {
  readonly seconds: number;
  /** CPU of the client side: our Node process and every child (dumpers, compressors, shells). */
  readonly clientCpuS: number;
  /** CPU of mariadbd during the run. */
  readonly serverCpuS: number;
  /** Only for our CLI: its own CPU and peak RSS. */
  readonly probe?: Probe;
}

export interface Probe {
  readonly peakRssKb: number;
  readonly selfCpuS: number;
  readonly childCpuS: number;
}

const HOUR = 3_600_000;

export function bin(name: string, alt?: string): string {
  const found = whichSystem(name) ?? (alt ? whichSystem(alt) : undefined);
  if (!found) throw new Error(`${name} not found`);
  return found;
}

/** The options our lib/kinds/mysql/kind.ts passes, with the sandbox's socket instead of an option file. */
export function dumpArgs(socket: string, db: BenchDb): string[] {
  return [
    '--no-defaults',
    `--socket=${socket}`,
    '--user=root',
    ...(db.myisam ? ['--lock-tables'] : ['--single-transaction', '--skip-lock-tables']),
    '--routines',
    '--events',
    '--triggers',
    '--hex-blob',
    '--max-allowed-packet=1G',
    '--default-character-set=utf8mb4',
    '--',
    db.name,
  ];
}

/** utime+stime (seconds) of a process, or of the children it has reaped (`children`). */
function cpuOf(pid: number | 'self', children = false): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const at = children ? [16, 17] : [14, 15];
    return at.reduce((n, i) => n + Number(fields[i - 3]), 0) / 100;
  } catch {
    return 0;
  }
}

export async function timed(serverPid: number | undefined, work: () => Promise<Probe | void>): Promise<Sample> {
  const client0 = cpuOf('self', true);
  const self0 = process.cpuUsage();
  const server0 = serverPid ? cpuOf(serverPid) : 0;
  const t0 = performance.now();
  const probe = (await work()) ?? undefined;
  const seconds = (performance.now() - t0) / 1000;
  const self = process.cpuUsage(self0);
  // The bench's own CPU counts too: some of ours runs in-process (the loader, the sidecar).
  const clientCpuS = cpuOf('self', true) - client0 + (self.user + self.system) / 1e6;
  return { seconds, clientCpuS, serverCpuS: serverPid ? cpuOf(serverPid) - server0 : 0, probe };
}

/** Settings an admin may change that move the figures: engine (rsyncable), compression, level. */
export interface DumpSettings {
  readonly engine?: string;
  readonly compression?: string;
  readonly level?: number;
  /** priority.nice / priority.ionice; absent: the defaults (nice 10, best-effort 7). */
  readonly priority?: { readonly nice: number; readonly ionice: string };
  /** dumps.max_rate (e.g. '10M'); absent: no limit. */
  readonly maxRate?: string;
}

/** A config.yaml (JSON is YAML) for the sandbox: panel and PostgreSQL off, everything else default. */
export function writeConfig(file: string, root: string, socket: string, include: readonly string[], settings: DumpSettings = {}): void {
  const dumps = { ...(settings.compression ? { compression: settings.compression } : {}), ...(settings.level ? { level: settings.level } : {}), ...(settings.maxRate ? { max_rate: settings.maxRate } : {}) };
  const config = {
    ...(settings.engine ? { engine: settings.engine } : {}),
    ...(settings.priority ? { priority: settings.priority } : {}),
    dumps,
    paths: { root },
    panel: { enabled: false },
    databases: {
      method: 'native',
      postgresql: { enabled: false },
      mysql: { enabled: true, socket, defaults_file: join(root, 'no-my.cnf'), include },
    },
  };
  writeFileSync(file, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
}

/** (a) ours: the built CLI, exactly as an admin or cron runs it, with the RSS/CPU probe preloaded. */
export async function runOurs(cli: string, probeModule: string, configFile: string, dumpsDir: string, serverPid?: number): Promise<Sample> {
  // The dumps directory is kept between runs, as on a server dumping nightly: retention
  // (dumps.keep) runs as usual and the previous run's manifest is there.
  const probeFile = join(dumpsDir, '..', 'probe.json');
  rmSync(probeFile, { force: true });
  const sample = await timed(serverPid, async () => {
    const node = cmd(process.execPath, ['--import', pathToFileURL(probeModule).href, cli, 'dump', '-c', configFile], {
      env: { ASB_BENCH_PROBE: probeFile },
    });
    await run(node, { timeoutMs: 6 * HOUR });
    return JSON.parse(readFileSync(probeFile, 'utf8')) as Probe;
  });
  return sample;
}

/**
 * Our `restore db NAME --into TARGET` through the built CLI, as an admin runs it after a dump:
 * from the newest local run, into a database that does not exist yet (created), over
 * restore.connections (default 2), with the RSS/CPU probe preloaded.
 */
export async function runOurRestore(cli: string, probeModule: string, configFile: string, database: string, into: string, serverPid?: number): Promise<Sample> {
  const probeFile = join(configFile + '.restore-probe.json');
  rmSync(probeFile, { force: true });
  return timed(serverPid, async () => {
    const node = cmd(process.execPath, ['--import', pathToFileURL(probeModule).href, cli, 'restore', 'db', database, '--into', into, '-c', configFile], {
      env: { ASB_BENCH_PROBE: probeFile },
    });
    await run(node, { timeoutMs: 6 * HOUR });
    return JSON.parse(readFileSync(probeFile, 'utf8')) as Probe;
  });
}

/** (b) the ApisCP-style baseline: one database after the other, `mariadb-dump DB | gzip > file`. */
export async function runBaseline(socket: string, dbs: readonly BenchDb[], outDir: string, serverPid?: number): Promise<Sample> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const dumper = bin('mariadb-dump', 'mysqldump');
  const gzip = bin('gzip');
  const script = ['set -eu -o pipefail', ...dbs.map((db) => `${[dumper, ...dumpArgs(socket, db)].map(quote).join(' ')} | ${quote(gzip)} > ${quote(join(outDir, `${db.name}.sql.gz`))}`)];
  return timed(serverPid, async () => {
    await run(cmd(bin('bash'), ['-c', script.join('\n')]), { timeoutMs: 6 * HOUR });
  });
}

/** (c) the raw limit: `mariadb-dump DB > /dev/null`, `concurrency` at a time, largest first (the best case). */
export async function runLimit(socket: string, dbs: readonly BenchDb[], concurrency: number, serverPid?: number): Promise<Sample> {
  const dumper = bin('mariadb-dump', 'mysqldump');
  const order = [...dbs].sort((a, b) => b.dataBytes - a.dataBytes);
  return timed(serverPid, async () => {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < order.length) await run(cmd(dumper, dumpArgs(socket, order[next++]!)), { stdout: 'ignore', timeoutMs: 6 * HOUR });
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  });
}

/** Untimed warm-up: dump every database once and count its SQL bytes (the MB/s basis). */
export async function sqlBytes(socket: string, dbs: readonly BenchDb[]): Promise<number> {
  const dumper = bin('mariadb-dump', 'mysqldump');
  let total = 0;
  for (const db of dbs) {
    const line = `${[dumper, ...dumpArgs(socket, db)].map(quote).join(' ')} | wc -c`;
    total += Number((await run(cmd(bin('bash'), ['-c', `set -o pipefail; ${line}`]), { timeoutMs: 6 * HOUR })).stdout.trim());
  }
  return total;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const shell = (lines: string[]): ReturnType<typeof cmd> => cmd(bin('bash'), ['-c', ['set -eu -o pipefail', ...lines].join('\n')]);

/** Run `each` over `items`, `concurrency` at a time (the order given). */
async function workers<T>(items: readonly T[], concurrency: number, each: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await each(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** The shell floor: `mariadb-dump DB | zstd -1 > file`, `concurrency` at a time, largest first. */
export async function runFloor(socket: string, dbs: readonly BenchDb[], concurrency: number, outDir: string, serverPid?: number): Promise<Sample> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const dumper = bin('mariadb-dump', 'mysqldump');
  const zstd = bin('zstd');
  const order = [...dbs].sort((a, b) => b.dataBytes - a.dataBytes);
  return timed(serverPid, async () => {
    await workers(order, concurrency, (db) =>
      run(shell([`${[dumper, ...dumpArgs(socket, db)].map(quote).join(' ')} | ${quote(zstd)} -q -1 > ${quote(join(outDir, `${db.name}.sql.zst`))}`]), { timeoutMs: 6 * HOUR }),
    );
  });
}

/** mydumper as a user who cares about speed runs it: 2 threads, compressed, with routines, events, triggers. */
export async function runMydumper(socket: string, regex: string, outDir: string, extra: readonly string[] = [], serverPid?: number): Promise<Sample> {
  rmSync(outDir, { recursive: true, force: true });
  const args = ['-S', socket, '-u', 'root', '-t', '2', '-c', '-G', '-E', '-R', '--regex', regex, '-o', outDir, ...extra];
  return timed(serverPid, async () => {
    await run(cmd(bin('mydumper'), args), { timeoutMs: 6 * HOUR });
  });
}

/** The bare loop for many tiny databases: `xargs -P2 … mariadb-dump DB | zstd > file`. */
export async function runTinyLoop(socket: string, names: readonly string[], outDir: string, serverPid?: number): Promise<Sample> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const dumper = bin('mariadb-dump', 'mysqldump');
  const list = join(outDir, '..', 'tiny-names.txt');
  writeFileSync(list, names.join('\n') + '\n');
  const inner = `${quote(dumper)} --no-defaults --socket=${quote(socket)} --user=root --single-transaction --skip-lock-tables --routines --events --triggers --hex-blob -- "$1" | ${quote(bin('zstd'))} -q > ${quote(outDir)}/"$1".sql.zst`;
  return timed(serverPid, async () => {
    await run(shell([`xargs -P2 -I{} bash -c ${quote(`set -o pipefail; ${inner}`)} _ {} < ${quote(list)}`]), { timeoutMs: 6 * HOUR });
  });
}

/** myloader -t 2 from a mydumper directory into `database` (overwriting). */
export async function runMyloader(socket: string, dir: string, database: string, serverPid?: number): Promise<Sample> {
  return timed(serverPid, async () => {
    await run(cmd(bin('myloader'), ['-S', socket, '-u', 'root', '-t', '2', '-d', dir, '-B', database, '-o']), { timeoutMs: 6 * HOUR });
  });
}

/** The one-stream restore an admin types: `zstd -dc file | mariadb database`. */
export async function runPipeRestore(socket: string, file: string, database: string, serverPid?: number): Promise<Sample> {
  const client = `${quote(bin('mariadb'))} --no-defaults --socket=${quote(socket)} --user=root --max-allowed-packet=1G --default-character-set=utf8mb4 ${quote(database)}`;
  return timed(serverPid, async () => {
    await run(shell([`${quote(bin('zstd'))} -q -dc -- ${quote(file)} | ${client}`]), { timeoutMs: 6 * HOUR });
  });
}
