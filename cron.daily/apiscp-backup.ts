#!/usr/bin/env node
// The nightly entry. `apiscp-backup install` writes /etc/cron.daily/apiscp-backup, a two-line
// sh script that execs node (by absolute path) with this file. Logic: lib/cli/commands/nightly.ts.
const { bundledMain } = await import('../lib/cli/bundled.js');
await (await bundledMain())([...process.argv.slice(2), 'nightly']);
