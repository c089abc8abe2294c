#!/usr/bin/env node
// Bacula ClientRunBeforeJob / wrapper-script entry: same as `apiscp-backup hook pre-backup …`.
const { bundledMain } = await import('../lib/cli/bundled.js');
await (await bundledMain())(['hook', 'pre-backup', ...process.argv.slice(2)]);
