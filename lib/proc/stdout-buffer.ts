import { existsSync } from 'node:fs';

/** Where coreutils keeps the library `stdbuf` preloads (Debian, Ubuntu, RHEL and derivatives). */
const LIBSTDBUF = ['/usr/libexec/coreutils/libstdbuf.so', '/usr/lib/coreutils/libstdbuf.so'];

/**
 * Environment that makes a stdio-based tool write its stdout in 1 MiB blocks, what
 * `stdbuf -o1M tool` does, without putting stdbuf in front of the command (error messages and
 * process lists keep naming the tool). mariadb-dump writes a pipe 10 KiB at a time; relayed
 * through Node (the streaming trailer check) that is tens of thousands of reads per dump and was
 * most of our own CPU; 1 MiB blocks need far fewer (bench:dumps). Nothing when the
 * library is not installed: the tool then writes as it always did.
 */
export function largeStdoutBuffer(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const lib = LIBSTDBUF.find((p) => existsSync(p));
  if (!lib) return {};
  return { LD_PRELOAD: env.LD_PRELOAD ? `${env.LD_PRELOAD} ${lib}` : lib, _STDBUF_O: String(1 << 20) };
}
