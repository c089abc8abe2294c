// Preloaded into the CLI under test (`node --import <this> apiscp-backup.js dump …`): just before
// the process exits it records its own peak RSS (VmHWM) and CPU time, and the CPU time of the
// children it reaped (mariadb-dump, zstd, the verification), into $ASB_BENCH_PROBE as JSON.
// Reading our own /proc entry measures exactly the Node process, not its children.
import { readFileSync, writeFileSync } from 'node:fs';

const out = process.env.ASB_BENCH_PROBE;
if (out) {
  process.on('exit', () => {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    // /proc/self/stat: fields after the ')' of the command name; utime is the 14th field overall.
    const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
    const ticks = (n: number): number => Number(fields[n - 3]) / 100; // USER_HZ is 100 on Linux
    writeFileSync(
      out,
      JSON.stringify({ peakRssKb: kb('VmHWM'), selfCpuS: ticks(14) + ticks(15), childCpuS: ticks(16) + ticks(17) }),
    );
  });
}
