/**
 * A Bacula restore's own progress while our fetch waits on the job, against real Bacula 9.6
 * daemons (test/harness/bacula.ts): `status client` polled every ~2 s gives the file daemon's
 * files, bytes and rate for this job to onProgress; without onProgress, no `status` is asked.
 * The restore job first sleeps 5 s on the client (a RunScript): 120 MB restore here in ~2 s, and
 * neither the Job's Maximum Bandwidth nor anything else of the harness held the file daemon back.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedConfig } from '../../lib/config/load.js';
import { resolvePaths } from '../../lib/config/paths.js';
import { configSchema } from '../../lib/config/schema.js';
import { baculaFetch, baculaList } from '../../lib/engine/bacula-restore.js';
import type { EngineContext } from '../../lib/engine/types.js';
import { memoryLogger } from '../../lib/log.js';
import { startBacula, type BaculaHarness } from '../harness/bacula.js';
import { rmrf } from '../helpers/e2e.js';
import { toolLog, type ToolLog } from '../helpers/tool-log.js';

const base = mkdtempSync(join(tmpdir(), 'bacula-progress-'));
let h: BaculaHarness;
let loaded: LoadedConfig;
let tools: ToolLog;

beforeAll(async () => {
  h = await startBacula({
    extraDirectorConfig: `
Job {
  Name = "SlowRestore"
  Type = Restore
  Client = apiscp-fd
  Storage = File1
  FileSet = "Full Set"
  Pool = File
  Messages = Standard
  Where = ${JSON.stringify(join(base, 'unused'))}
  RunScript {
    RunsWhen = Before
    RunsOnClient = yes
    Command = "/bin/sleep 5"
  }
}
`,
  });
  // 120 MB that do not compress: seconds at 10 MB/s.
  for (let i = 0; i < 6; i++) writeFileSync(join(h.dataDir, `blob-${i}.bin`), randomBytes(20 * 2 ** 20));
  const full = await h.runJob('BackupClient1', 'Full');
  expect(full.status, full.log).toBe('T');
  // bconsole through a wrapper that logs what it is asked (the CLI and we resolve it on PATH).
  tools = toolLog(base, ['bconsole']);
  const config = configSchema.parse({
    paths: { root: join(base, 'root') },
    engine: 'bacula',
    bacula: { client: h.clientName, job: 'BackupClient1', bconsole: join(tools.path.split(':')[0]!, 'bconsole'), bconsole_config: h.bconsoleConfigFile, restore_job: 'SlowRestore' },
  });
  loaded = { config, file: undefined, paths: resolvePaths(config) };
}, 240_000);

afterAll(async () => {
  await h?.stop();
  rmrf(base);
});

const ctx = (progress?: string[]): EngineContext => ({ loaded, log: memoryLogger(), sources: [], excludes: [], ...(progress ? { onProgress: (t: string) => progress.push(t) } : {}) });

describe('Bacula restore progress', () => {
  it('watched: the job\'s files and bytes from the file daemon while we wait, polled every ~2 s; the files come whole', async () => {
    const [point] = await baculaList(ctx());
    expect(point).toBeDefined();
    const into = join(base, 'watched');
    mkdirSync(into);
    const progress: string[] = [];
    const before = tools.calls().length;
    const started = Date.now();
    const fetching = baculaFetch(ctx(progress), { point: point!, paths: [h.dataDir], into });
    await new Promise((r) => setTimeout(r, 3000));
    const status = await h.bconsole(`status client=${h.clientName}`);
    await fetching;
    const tookMs = Date.now() - started;
    for (let i = 0; i < 6; i++) expect(readFileSync(join(into, h.dataDir, `blob-${i}.bin`)).equals(readFileSync(join(h.dataDir, `blob-${i}.bin`)))).toBe(true);
    const lines = progress.filter((p) => /^restore job \d+: \d+ files, \d+\.\d\d MiB, \d+\.\d\d MiB\/s$/.test(p));
    expect(lines.length, `${progress.join('\n')} (restore took ${tookMs} ms; status client 3 s in:\n${status})`).toBeGreaterThan(0);
    // The file daemon's counts for this job (0 while its RunScript sleeps), never going back.
    const mib = lines.map((l) => Number(/ (\d+\.\d\d) MiB,/.exec(l)![1]));
    for (let i = 1; i < mib.length; i++) expect(mib[i]!).toBeGreaterThanOrEqual(mib[i - 1]!);
    expect(status, status).toMatch(/Files=\d+ Bytes=[\d,]+ AveBytes\/sec=/);
    // Polled, not hammered: about one status per 2 s of waiting.
    const statuses = tools.calls().slice(before).filter((c) => c.input.some((l) => l.startsWith('status client=')));
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.length).toBeLessThanOrEqual(Math.ceil(tookMs / 2000) + 1);
  }, 240_000);

  it('nobody watching: no status asked', async () => {
    const [point] = await baculaList(ctx());
    const into = join(base, 'plain');
    mkdirSync(into);
    const before = tools.calls().length;
    await baculaFetch(ctx(), { point: point!, paths: [join(h.dataDir, 'blob-0.bin')], into });
    expect(readFileSync(join(into, h.dataDir, 'blob-0.bin')).length).toBe(20 * 2 ** 20);
    expect(tools.calls().slice(before).some((c) => c.input.some((l) => l.startsWith('status')))).toBe(false);
  }, 240_000);
});
