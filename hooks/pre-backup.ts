#!/usr/bin/env node
// Bacula ClientRunBeforeJob / wrapper-script entry: same as `apiscp-backup hook pre-backup …`.
const { main } = await import('../lib/cli/main.js');
await main(['hook', 'pre-backup', ...process.argv.slice(2)]);
