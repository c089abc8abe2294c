/**
 * borg's own progress when someone watches (ctx.onProgress: --progress --log-json), against real
 * borg 1.2: the same warnings and errors as without it (what cron gets), its create and extract
 * progress reaching onProgress (test/cli/progress-engines.test.ts: nothing asked of borg when nobody watches).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { borgEngine, borgEnv } from '../../lib/engine/borg.js';
import type { EngineContext } from '../../lib/engine/types.js';
import { EngineError } from '../../lib/errors.js';
import { memoryLogger } from '../../lib/log.js';
import { cmd } from '../../lib/proc/command.js';
import { run } from '../../lib/proc/run.js';

let base: string;
let loaded: LoadedConfig;
let src: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'borg-progress-'));
  src = join(base, 'src');
  await mkdir(join(src, 'www'), { recursive: true });
  // 64 MiB that neither compress nor deduplicate: borg takes more than its 0.2 s between progress lines.
  for (let i = 0; i < 4; i++) await writeFile(join(src, 'www', `blob-${i}.bin`), randomBytes(16 * 2 ** 20));
  // A tenant's name: borg's progress path and the display must survive it.
  await writeFile(join(src, 'www', 'a\nb "q" \u001b[31m.txt'), 'x');
  await writeFile(join(base, 'secret'), 'pass phrase\n', { mode: 0o600 });
  const config = configSchema.parse({ paths: { root: join(base, 'root') }, borg: { repository: join(base, 'repo'), passphrase_file: join(base, 'secret'), compression: 'lz4' } });
  loaded = { config, file: undefined, paths: resolvePaths(config) };
}, 60_000);

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

function ctx(progress?: string[]): EngineContext {
  return { loaded, log: memoryLogger(), sources: [src], excludes: [], ...(progress ? { onProgress: (t: string) => progress.push(t) } : {}) };
}

async function engineError(p: Promise<unknown>): Promise<EngineError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(EngineError);
  return err as EngineError;
}

describe('borg progress on a terminal, the same words as under cron', () => {
  it('no repository: the same error with and without progress', async () => {
    const plain = await engineError(borgEngine.backup(ctx()));
    const watched = await engineError(borgEngine.backup(ctx([])));
    expect(plain.message).toMatch(/no repository at BORG_REPO.*repo-init/);
    expect(watched.message).toBe(plain.message);
  });

  it('create: progress with sizes and files while it reads; a vanished source is the same warning both ways', async () => {
    await run(cmd('borg', ['init', '--encryption=repokey-blake2'], { env: borgEnv(loaded) }));
    const progress: string[] = [];
    const watched = await borgEngine.backup(ctx(progress));
    expect(watched.warnings).toEqual([]);
    expect(watched.id).toMatch(/-\d{4}-\d\d-\d\dT/);
    const sizes = progress.filter((p) => /^\d+\.\d\d MiB read, \d+\.\d\d MiB new, \d+ files {2}/.test(p));
    expect(sizes.length, progress.join('\n')).toBeGreaterThan(0);
    // Numbers from borg that move: more read at the last line than at the first.
    const read = sizes.map((s) => Number(/^(\d+\.\d\d) MiB read/.exec(s)![1]));
    expect(read.at(-1)!).toBeGreaterThan(0);
    for (const p of progress) expect(p).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);

    // borg exit 1 (a source that is gone): the warning cron records, word for word, when watched.
    const vanished = [src, join(base, 'vanished')];
    const plain = await borgEngine.backup({ ...ctx(), sources: vanished });
    const seen: string[] = [];
    const warned = await borgEngine.backup({ ...ctx(seen), sources: vanished });
    expect(plain.warnings).toHaveLength(1);
    expect(plain.warnings[0]).toMatch(/^borg: warning .*vanished: \[Errno 2\] No such file or directory/);
    expect(warned.warnings).toEqual(plain.warnings);
  }, 240_000);

  it('fetch (extract): its percent while it writes', async () => {
    const [point] = await borgEngine.list!(ctx());
    const into = join(base, 'fetched');
    await mkdir(into);
    const progress: string[] = [];
    await borgEngine.fetch!(ctx(progress), { point: point!, paths: [join(src, 'www')], into });
    expect((await readFile(join(into, src, 'www', 'blob-0.bin'))).equals(await readFile(join(src, 'www', 'blob-0.bin')))).toBe(true);
    expect(progress.some((p) => /^\d+\.\d% Extracting: /.test(p)), progress.join('\n')).toBe(true);
  }, 240_000);
});
