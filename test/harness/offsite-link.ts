import { readFileSync } from 'node:fs';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';
import { readRunProgress, runProgressFile } from '../../lib/report/run-progress.js';
import { NODE } from '../helpers/e2e.js';
import { daemonSet } from './bacula.js';
import { listensOn } from './netns.js';
import type { Offsite } from './offsite.js';

/**
 * Loss and delay on the offsite link without sch_netem (the development kernel lacks it, and CI's
 * Debian kernel may too): loss is nftables dropping a random share of the ApisCP server's packets
 * on eth0 (`numgen random mod 100 < N drop`, both directions), delay a TCP relay on the backup
 * host that holds every chunk `delayMs` before passing it on. Both act on the real packets and
 * connections of the real tools; nothing stands in for restic, borg or the servers.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const TABLE = 'apiscp_offsite_loss';

export interface Loss {
  /** Packets nftables dropped so far (its counters): proof the loss was there. */
  dropped(): Promise<number>;
  remove(): Promise<void>;
}

/** Drop `percent` % of the ApisCP server's packets on its link, in and out. */
export async function addLoss(offsite: Offsite, percent: number): Promise<Loss> {
  const nft = (args: string[], input?: string) => run(offsite.onServer(cmd('nft', args)), input === undefined ? {} : { input });
  const rule = `iifname "eth0" numgen random mod 100 < ${percent} counter drop`;
  await nft(['-f', '-'], [
    `table inet ${TABLE} {`,
    `  chain in { type filter hook input priority 0; policy accept; ${rule}; }`,
    `  chain out { type filter hook output priority 0; policy accept; ${rule.replace('iifname', 'oifname')}; }`,
    '}',
    '',
  ].join('\n'));
  return {
    async dropped() {
      const listed = (await nft(['list', 'table', 'inet', TABLE])).stdout;
      return [...listed.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    },
    async remove() {
      await nft(['delete', 'table', 'inet', TABLE]);
    },
  };
}

/**
 * The relay (run by node inside the backup host's namespace): one queue per direction, each chunk
 * released `delay` ms after it arrived, in order. A FIN follows the data before it.
 */
const RELAY = `
const net = require('node:net');
const [host, port, toHost, toPort, delay] = process.argv.slice(1);
const d = Number(delay);
function pass(from, to) {
  const q = [];
  let timer;
  const drain = () => {
    timer = undefined;
    const now = Date.now();
    while (q.length && q[0].at <= now) { const x = q.shift(); if (x.end) to.end(); else to.write(x.b); }
    if (q.length) timer = setTimeout(drain, q[0].at - now);
  };
  const push = (x) => { q.push({ at: Date.now() + d, ...x }); timer ??= setTimeout(drain, d); };
  from.on('data', (b) => push({ b }));
  from.on('end', () => push({ end: true }));
  from.on('error', () => to.destroy());
  from.on('close', () => { if (from.destroyed && !from.readableEnded) to.destroy(); });
}
net.createServer((c) => { const s = net.connect(Number(toPort), toHost); pass(c, s); pass(s, c); }).listen(Number(port), host);
`;

export interface Relay {
  readonly port: number;
  stop(): Promise<void>;
}

/** A relay on the backup host: `port` → `toPort`, each direction held `delayMs`. */
export async function startDelayRelay(offsite: Offsite, port: number, toPort: number, delayMs: number): Promise<Relay> {
  const daemons = daemonSet(offsite.base);
  const child = daemons.start(offsite.onBackupHost(cmd(NODE, ['-e', RELAY, offsite.address, String(port), offsite.address, String(toPort), String(delayMs)])), `relay-${port}`);
  for (const until = Date.now() + 10_000; !listensOn(child.pid!, port); await sleep(50)) {
    if (daemons.dead() || Date.now() > until) {
      await daemons.stop();
      throw new Error(`the delaying relay did not listen on ${port}; see ${offsite.base}/relay-${port}.out`);
    }
  }
  return { port, stop: () => daemons.stop() };
}

/** The run's phases as running.json gave them (phase → when the job entered it), read every 50 ms. */
export function watchPhases(stateDir: string): { stop(): Promise<Map<string, string>> } {
  const seen = new Map<string, string>();
  let going = true;
  const file = runProgressFile(stateDir);
  const loop = (async () => {
    while (going) {
      const p = readRunProgress(file);
      // updatedAt is rewritten while dumps progress: the first sight of a phase is when it began
      // (within the poll); 'backup' and later phases are written once, at their start.
      if (p && !seen.has(p.phase)) seen.set(p.phase, p.updatedAt);
      await sleep(50);
    }
  })();
  return {
    async stop() {
      going = false;
      await loop;
      return seen;
    },
  };
}

/** The dumps' manifest of a run (dumps.dir/<runId>/manifest.json). */
export function manifestTimes(file: string): { startedAt: string; finishedAt: string; status: string } {
  return JSON.parse(readFileSync(file, 'utf8')) as { startedAt: string; finishedAt: string; status: string };
}
