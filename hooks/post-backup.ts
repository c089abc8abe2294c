#!/usr/bin/env node
// Bacula RunScript After / wrapper-script entry: same as `apiscp-backup hook post-backup …`.
const { main } = await import('../lib/cli/main.js');
await main(['hook', 'post-backup', ...process.argv.slice(2)]);
