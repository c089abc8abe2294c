/**
 * The CLI's `main`, from the bundle `npm run build` writes (dist/bundle/cli, scripts/postbuild.mjs):
 * one file for Node to load instead of ~250. Entry points call this; it is the only module of
 * dist/lib they load.
 */
type Main = (argv: string[]) => Promise<void>;

// A specifier tsc does not resolve: the bundle exists only in dist.
const BUNDLE = '../../bundle/cli/main.js';

/**
 * A signal while the bundle loads (a cancelled job right after it started) ends the process the
 * way every other interruption does, exit 143, with nothing yet to clean up: no lock, no file.
 * Node's default action would end it by the signal itself (no exit code, no word). withContext
 * replaces these handlers with its own as its first step.
 */
export function exitOnEarlySignals(): void {
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`apiscp-backup: interrupted by ${sig} while starting; nothing was done\n`);
      process.exit(143);
    });
  }
}

export async function bundledMain(): Promise<Main> {
  exitOnEarlySignals();
  return ((await import(BUNDLE)) as { main: Main }).main;
}
