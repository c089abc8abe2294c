/**
 * The CLI's `main`, from the bundle `npm run build` writes (dist/bundle/cli, scripts/postbuild.mjs):
 * one file for Node to load instead of ~250. Entry points call this; it is the only module of
 * dist/lib they load.
 */
type Main = (argv: string[]) => Promise<void>;

// A specifier tsc does not resolve: the bundle exists only in dist.
const BUNDLE = '../../bundle/cli/main.js';

export async function bundledMain(): Promise<Main> {
  return ((await import(BUNDLE)) as { main: Main }).main;
}
