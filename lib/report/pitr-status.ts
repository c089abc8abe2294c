import { followerLive, type Window } from '../binlog/window.js';

/**
 * `status`'s point-in-time lines (issue 29): the window per server, the follower, gaps. Pure:
 * lib/job/status-check.ts reads the window (lib/binlog/window.ts). Nothing is said on a server
 * whose dumps record no binlog position and where nothing was ever followed.
 */
export function pitrStatus(w: Window | undefined, nowMs: number): { details: string[]; warnings: string[] } {
  const details: string[] = [];
  const warnings: string[] = [];
  if (!w || (!w.state && !w.files.length && !w.dumps.length)) return { details, warnings };
  const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
  if (!w.state && !w.files.length) {
    details.push('point-in-time (mysql): dumps record binlog positions, but binlog follow has never run: no point after the newest dump can be restored');
    return { details, warnings };
  }
  const live = followerLive(w.state, nowMs);
  if (!live) warnings.push(`binlog follow is not running${w.state ? ` (last seen ${iso(Date.parse(w.state.updatedAt))}${w.state.lastError ? `: ${w.state.lastError}` : ''})` : ''}: points after the newest copied event cannot be restored`);
  const s = w.state?.server;
  const behind = s && live ? (s.file !== w.files.at(-1)?.name ? `${s.file} not copied yet` : (w.state!.localBytes ?? 0) < s.position ? `${s.position - (w.state!.localBytes ?? 0)} bytes behind` : undefined) : undefined;
  if (behind) warnings.push(`binlog follow lags: ${behind}`);
  if (w.missing) warnings.push(`binlog file ${w.missing.name} is missing: points after ${iso(w.missing.after)} cannot be restored until the next dump`);
  const newestDump = w.dumps[0]?.at ?? 0;
  for (const g of w.gaps) if (Date.parse(g.detectedAt) > newestDump) warnings.push(`binlog gap: the server no longer had the files after ${g.after ?? 'the start'} (resumed at ${g.resumedAt}): points after ${g.lastEventBefore ?? g.detectedAt} cannot be restored until the next dump`);
  if (w.from !== undefined && w.to !== undefined) {
    const lag = s && live && behind ? `, lag ${behind}` : '';
    details.push(`point-in-time (mysql): from ${iso(w.from)} to ${iso(w.to)}${lag}; ${w.files.length} binlog file(s) kept${live ? ', follower running' : ''}`);
  } else {
    details.push(`point-in-time (mysql): no window yet (${w.dumps.length ? 'the copies do not reach back to a dump\'s position' : 'no dump with a binlog position'}); ${w.files.length} binlog file(s) kept`);
  }
  return { details, warnings };
}
