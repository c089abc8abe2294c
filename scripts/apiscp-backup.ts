#!/usr/bin/env node
// The `apiscp-backup` command. Kept tiny so start-up stays fast: `--version` answers before
// anything else is loaded; everything else lives in lib/cli, loaded as one bundle (lib/cli/bundled.ts).
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`${pkg.version}\n`);
} else {
  const { bundledMain } = await import('../lib/cli/bundled.js');
  await (await bundledMain())(argv);
}
