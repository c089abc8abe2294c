import { cmd } from '../../lib/proc/command.js';
import { exitClasses } from '../../lib/proc/exit-status.js';
import { run } from '../../lib/proc/run.js';
import type { MariadbServer } from '../../lib/throwaway/mariadb.js';
import { bin } from './measure.js';

/**
 * The sites' side: a steady OLTP-ish load on a database of its own (sysbench: 4 point selects and
 * one indexed update per transaction, one connection, a fixed rate so a slow server shows as
 * latency, not as fewer transactions), and its 99th-percentile transaction latency.
 */
const TABLE_SIZE = 10_000;
const RATE = 100;

function common(socket: string): string[] {
  return ['oltp_read_write', '--db-driver=mysql', `--mysql-socket=${socket}`, '--mysql-user=root', '--mysql-db=sbtest', '--tables=1', `--table-size=${TABLE_SIZE}`];
}

export async function prepareSysbench(server: MariadbServer): Promise<void> {
  await server.sql('CREATE DATABASE IF NOT EXISTS sbtest');
  await run(cmd(bin('sysbench'), [...common(server.socket), 'prepare']), { timeoutMs: 600_000 });
}

export interface Latency {
  readonly p99Ms: number;
  readonly transactions: number;
}

export async function sysbenchP99(socket: string, seconds: number): Promise<Latency> {
  const args = [
    ...common(socket),
    '--point-selects=4', '--simple-ranges=0', '--sum-ranges=0', '--order-ranges=0', '--distinct-ranges=0',
    '--index-updates=1', '--non-index-updates=0', '--delete-inserts=0',
    '--threads=1', `--rate=${RATE}`, `--time=${Math.max(1, Math.round(seconds))}`, '--percentile=99', '--report-interval=0', 'run',
  ];
  const out = (await run(cmd(bin('sysbench'), args), { timeoutMs: 600_000 })).stdout;
  const p99 = /99th percentile:\s+([\d.]+)/.exec(out)?.[1];
  const tx = /transactions:\s+(\d+)/.exec(out)?.[1];
  if (p99 === undefined) throw new Error(`sysbench printed no 99th percentile:\n${out.slice(-800)}`);
  return { p99Ms: Number(p99), transactions: Number(tx ?? 0) };
}

/**
 * p99 while `work` runs: sysbench runs for 90 % of `expectS` (the work's duration measured
 * before), started with it, so its whole window falls inside the work.
 */
export async function p99While(socket: string, expectS: number, work: () => Promise<unknown>): Promise<Latency> {
  const [latency] = await Promise.all([sysbenchP99(socket, Math.max(1, Math.floor(expectS * 0.9))), work()]);
  return latency;
}

/**
 * The floor of gentleness on this machine: one busy loop at SCHED_IDLE (`chrt --idle 0`, below
 * every nice level: it runs only on a core nothing else wants) for `seconds`. Whatever the
 * sites' p99 is while it runs, no dump at any CPU priority can do better: a dump keeps at
 * least one core as busy.
 */
export async function idleCpuHog(seconds: number): Promise<void> {
  // timeout ends the loop with exit code 124: the expected end.
  await run(cmd(bin('chrt'), ['--idle', '0', bin('timeout'), String(seconds), bin('bash'), '-c', 'while :; do :; done']), { timeoutMs: (seconds + 30) * 1000, exitClass: exitClasses({ ok: [124] }) });
}
