import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { borgEngine, borgEnv, borgPruneArgs } from '../../lib/engine/borg.js';
import { resticEngine, resticEnv, resticForgetArgs } from '../../lib/engine/restic.js';
import type { Engine, EngineContext } from '../../lib/engine/types.js';
import { memoryLogger } from '../../lib/log.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

// Retention for the snapshot engines: ours are pruned to the configured --keep-*, and a
// snapshot someone else made in the same repository is never touched.
const work: string[] = [];
afterAll(async () => {
  for (const w of work) await rm(w, { recursive: true, force: true });
});

async function setup(engine: 'restic' | 'borg'): Promise<{ ctx: EngineContext; loaded: LoadedConfig; data: string }> {
  const base = await mkdtemp(join(tmpdir(), `asb-keep-${engine}-`));
  work.push(base);
  const data = join(base, 'data');
  await mkdir(data);
  await writeFile(join(base, 'secret'), 'correct horse\n', { mode: 0o600 });
  const settings =
    engine === 'restic'
      ? { restic: { repository: join(base, 'repo'), password_file: join(base, 'secret'), keep: { last: 2, daily: 0, weekly: 0, monthly: 0 } } }
      : { borg: { repository: join(base, 'repo'), passphrase_file: join(base, 'secret'), keep: { last: 2, daily: 0, weekly: 0, monthly: 0 } } };
  const config = configSchema.parse({ paths: { root: base }, ...settings });
  const loaded = { config, file: undefined, paths: resolvePaths(config) };
  return { ctx: { loaded, log: memoryLogger(), sources: [data], excludes: [] }, loaded, data };
}

async function backups(engine: Engine, ctx: EngineContext, data: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await writeFile(join(data, 'file'), `version ${i}\n`);
    await engine.backup(ctx);
  }
}

describe('retention of restic snapshots and borg archives', () => {
  it('argv: only our snapshots, keep-* from the config, zero counts left out', async () => {
    const { loaded: r } = await setup('restic');
    expect(resticForgetArgs(r)).toEqual(['forget', '--prune', '--tag', 'apiscp-backup', '--group-by', 'host,tags', '--keep-last', '2']);
    const { loaded: b } = await setup('borg');
    expect(borgPruneArgs(b)).toEqual(['prune', '--glob-archives', '{hostname}-*', '--keep-last', '2']);
    const defaults = configSchema.parse({});
    expect(defaults.restic.keep).toEqual({ daily: 7, weekly: 4, monthly: 6, yearly: 0 });
  });

  it('restic: forget --prune keeps the newest 2 of ours and a foreign snapshot', async () => {
    const { ctx, loaded, data } = await setup('restic');
    await resticEngine.init!(ctx);
    const env = resticEnv(loaded);
    await run(cmd('restic', ['backup', '--tag', 'someone-else', data], { env }));
    await backups(resticEngine, ctx, data, 4);
    await resticEngine.prune!(ctx);
    const snaps = JSON.parse((await run(cmd('restic', ['snapshots', '--json'], { env }))).stdout) as { tags?: string[] }[];
    expect(snaps.filter((s) => s.tags?.includes('apiscp-backup'))).toHaveLength(2);
    expect(snaps.filter((s) => s.tags?.includes('someone-else'))).toHaveLength(1);
  });

  it('borg: prune (then compact) keeps the newest 2 of ours and a foreign archive', async () => {
    const { ctx, loaded, data } = await setup('borg');
    await borgEngine.init!(ctx);
    const env = borgEnv(loaded);
    await run(cmd('borg', ['create', '::manual-archive', data], { env }));
    await backups(borgEngine, ctx, data, 4);
    await borgEngine.prune!(ctx);
    const names = (await run(cmd('borg', ['list', '--short'], { env }))).stdout.trim().split('\n');
    expect(names.filter((n) => n !== 'manual-archive')).toHaveLength(2);
    expect(names).toContain('manual-archive');
  }, 60_000);
});
