#!/usr/bin/env node
// Bacula RunScript After / wrapper-script entry: same as `apiscp-backup hook post-backup …`.
const { bundledMain } = await import('../lib/cli/bundled.js');
await (await bundledMain())(['hook', 'post-backup', ...process.argv.slice(2)]);
