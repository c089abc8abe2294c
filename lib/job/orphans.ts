import { readdirSync, readFileSync } from 'node:fs';
import type { RunProgress } from '../report/run-progress.js';

/** One process as /proc/<pid>/stat tells it. */
interface Proc {
  readonly pid: number;
  readonly comm: string;
  readonly pgrp: number;
  readonly startTime: number;
}

function readProc(pid: number): Proc | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = stat.lastIndexOf(')');
  // From field 3 on; field 2 (comm) is in parentheses and may hold spaces and ')'.
  const f = stat.slice(close + 2).split(' ');
  if (f[0] === 'Z') return undefined; // already dead, waiting to be reaped
  return { pid, comm: stat.slice(stat.indexOf('(') + 1, close), pgrp: Number(f[5 - 3]), startTime: Number(f[22 - 3]) };
}

/**
 * SIGKILL what a dead run's children left running: the members of each process group it
 * recorded (RunProgress.groups). A group counts as the dead run's only while its leader is the
 * very process recorded (same start time) or, the leader gone, every member started after it
 * (the kernel gives no new process a pid that is still some group's id, so such members are the
 * group's own). A pid reused by anything else is never touched. Returns what was killed.
 */
export function killOrphans(groups: RunProgress['groups']): { pid: number; comm: string }[] {
  if (!groups?.length) return [];
  const wanted = new Map(groups.map((g) => [g.pgid, Number(g.startTime)]));
  const members = new Map<number, Proc[]>();
  const leaders = new Map<number, Proc>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (!p || !wanted.has(p.pgrp) || p.pid === process.pid) continue;
    members.set(p.pgrp, [...(members.get(p.pgrp) ?? []), p]);
    if (p.pid === p.pgrp) leaders.set(p.pid, p);
  }
  const killed: { pid: number; comm: string }[] = [];
  for (const [pgid, procs] of members) {
    const started = wanted.get(pgid)!;
    const leader = leaders.get(pgid);
    const ours = leader ? leader.startTime === started : procs.every((p) => p.startTime >= started);
    if (!ours) continue;
    for (const p of procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
        killed.push({ pid: p.pid, comm: p.comm });
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return killed;
}
