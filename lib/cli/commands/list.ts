import { getEngine } from '../../engine/index.js';
import { hostSideRetention } from '../../engine/remote.js';
import type { BackupPoint } from '../../engine/types.js';
import { sizeIn } from '../../report/status.js';
import { restoreEngineContext } from '../../restore/restore-db.js';
import { localRuns } from '../../restore/source.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';
import { listRun } from '../list-run.js';

const when = (iso: string): string => iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');

/** Each engine's own units, so `list` and the engine's own report agree (Bacula's "471.5 MB" is 10^6 bytes). */
export function engineSize(engine: string, n: number): string {
  return sizeIn(n, engine === 'bacula' || engine === 'borg' ? 1000 : 1024);
}

/** `list`: the local runs in dumps.dir and the engine's backups of this server; `list RUN`: one run's databases. */
export default async function list(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  const runId = (opts.run as string | undefined) ?? args[0];
  if (runId !== undefined) return listRun(ctx, engineOf(ctx, opts), runId);
  const engine = getEngine(engineOf(ctx, opts));
  const local = localRuns(ctx.loaded);
  const ectx = restoreEngineContext(ctx.loaded, ctx.log, ctx.signal);
  if (engine.list) await engine.check(ectx);
  const backups = engine.list ? await engine.list(ectx, { client: opts.fromClient as string | undefined }) : [];
  if (ctx.options.json) {
    const retention = hostSideRetention(ctx.loaded);
    ctx.out(JSON.stringify({ dumpsDir: ctx.loaded.paths.dumpsDir, local, engine: engine.name, backups, ...(retention ? { retention } : {}) }, null, 2));
    return 0;
  }
  const lines = [`local runs in ${ctx.loaded.paths.dumpsDir}${local.length ? ' (`apiscp-backup list RUN` shows a run\'s databases)' : ': none'}`];
  for (const r of local) {
    const tags = [r.latest && 'latest', r.pinned && 'pinned (a backup is reading it)'].filter(Boolean).join(', ');
    lines.push(`  ${r.runId.padEnd(20)} ${when(r.time)}  ${r.status.padEnd(8)} ${String(r.databases).padStart(3)} database(s)  ${sizeIn(r.bytes, 1024).padStart(10)}${tags ? `  ${tags}` : ''}`);
  }
  if (engine.list) {
    lines.push(`${engine.name} backups${opts.fromClient ? ` of ${String(opts.fromClient)}` : ' of this server'}${backups.length ? ' (restore chain = backups a restore replays)' : ': none'}`);
    for (const b of backups) lines.push(`  ${backupLine(b)}`);
    const retention = hostSideRetention(ctx.loaded);
    if (retention) lines.push(retention);
  } else {
    lines.push(`engine ${engine.name}: no backups of its own (restores use the local runs)`);
  }
  ctx.out(lines.join('\n'));
  return 0;
}

export function backupLine(b: BackupPoint): string {
  const extra = [b.name && `job ${b.name}`, b.status && `status ${b.status}`, b.bytes !== undefined && engineSize(b.engine, b.bytes), b.client && `client ${b.client}`].filter(Boolean).join(', ');
  return `${b.id.padEnd(20)} ${when(b.time)}  ${b.level.padEnd(12)} chain ${b.chain}${extra ? `  ${extra}` : ''}`;
}
