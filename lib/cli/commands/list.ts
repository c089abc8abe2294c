import { getEngine } from '../../engine/index.js';
import { bytes } from '../../report/status.js';
import { restoreEngineContext } from '../../restore/restore-db.js';
import { localRuns } from '../../restore/source.js';
import type { CommandContext } from '../context.js';
import { engineOf } from './outcome.js';

const when = (iso: string): string => iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');

/** `list`: the local runs in dumps.dir and the engine's backups of this server, with restore chains. */
export default async function list(ctx: CommandContext, opts: Record<string, unknown>): Promise<number> {
  const engine = getEngine(engineOf(ctx, opts));
  const local = localRuns(ctx.loaded);
  const ectx = restoreEngineContext(ctx.loaded, ctx.log, ctx.signal);
  if (engine.list) await engine.check(ectx);
  const backups = engine.list ? await engine.list(ectx, { client: opts.fromClient as string | undefined }) : [];
  if (ctx.options.json) {
    ctx.out(JSON.stringify({ dumpsDir: ctx.loaded.paths.dumpsDir, local, engine: engine.name, backups }, null, 2));
    return 0;
  }
  const lines = [`local runs in ${ctx.loaded.paths.dumpsDir}${local.length ? '' : ': none'}`];
  for (const r of local) {
    const tags = [r.latest && 'latest', r.pinned && 'pinned (a backup is reading it)'].filter(Boolean).join(', ');
    lines.push(`  ${r.runId.padEnd(20)} ${when(r.time)}  ${r.status.padEnd(8)} ${String(r.databases).padStart(3)} database(s)  ${bytes(r.bytes).padStart(9)}${tags ? `  ${tags}` : ''}`);
  }
  if (engine.list) {
    lines.push(`${engine.name} backups${opts.fromClient ? ` of ${String(opts.fromClient)}` : ' of this server'}${backups.length ? ' (restore chain = backups a restore replays)' : ': none'}`);
    for (const b of backups) {
      const extra = [b.status && `status ${b.status}`, b.bytes !== undefined && bytes(b.bytes), b.client && `client ${b.client}`].filter(Boolean).join(', ');
      lines.push(`  ${b.id.padEnd(20)} ${when(b.time)}  ${b.level.padEnd(12)} chain ${b.chain}${extra ? `  ${extra}` : ''}`);
    }
  } else {
    lines.push(`engine ${engine.name}: no backups of its own (restores use the local runs)`);
  }
  ctx.out(lines.join('\n'));
  return 0;
}
