import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parse, stringify } from 'yaml';
import { snapshotTree } from '../../lib/demo/apiscp-tree.js';
import { parseDuplicityManifest, toIndex, volumesTouching } from '../../lib/engine/duplicity-manifest.js';
import type { Manifest } from '../../lib/model/manifest.js';
import { startServers, type Servers } from '../../lib/throwaway/servers.js';
import { assertBuilt, cli, rmrf, stopServers } from '../helpers/e2e.js';
import { createRestoreFixture, seedSiteDatabases, type RestoreFixture } from '../helpers/restore-fixture.js';
import { toolLog } from '../helpers/tool-log.js';

// The other side of duplicity's merged restore runs (restore.test.ts has the merged case): a
// dumps.dir spread over many volumes, with megabytes a site restore does not need between the
// paths it does (binlog copies, beside the runs), so one run of dumps.dir would decrypt volumes
// its paths' own runs do not. Real duplicity with --volsize 1; the site restored must be exact.

const base = mkdtempSync(join(tmpdir(), 'restore-dupvol-'));
let servers: Servers;
let f: RestoreFixture;

beforeAll(async () => {
  assertBuilt();
  servers = await startServers();
  await seedSiteDatabases(servers);
  f = await createRestoreFixture(base, 'duplicity', servers);
  const config = parse(readFileSync(f.config, 'utf8')) as { duplicity: Record<string, unknown> };
  config.duplicity.extra_args = ['--volsize', '1'];
  writeFileSync(f.config, stringify(config));
  // Incompressible: each MB is a volume of its own. `binlog` sorts between the runs and fs-acls.zst/latest.
  const binlog = join(f.loaded.paths.dumpsDir, 'binlog');
  mkdirSync(binlog, { recursive: true, mode: 0o700 });
  writeFileSync(join(binlog, 'mysql-bin.000001'), randomBytes(4 * 1024 * 1024));
  const r = await f.cli(['run']);
  expect(r.code, r.stderr).toBe(0);
}, 600_000);

afterAll(async () => {
  await stopServers(servers);
  rmrf(base);
});

test('dumps.dir over many volumes: no run of it, its paths in runs of their own or of the run directory, the site directory still in one run, the restore exact', async () => {
  const archive = join(f.loaded.paths.duplicityArchiveDir, f.loaded.config.duplicity.name);
  const full = readdirSync(archive).find((n) => /^duplicity-full\..*\.manifest$/.test(n))!;
  const parsed = parseDuplicityManifest(readFileSync(join(archive, full)));
  if (!parsed.ok) throw new Error(`${full}: line ${parsed.line}: ${parsed.reason}`);
  // The layout this test is about: dumps.dir touches volumes beyond those of its first and last paths.
  const dumps = f.loaded.paths.dumpsDir;
  expect(volumesTouching(parsed.volumes, toIndex(dumps)).size).toBeGreaterThan(volumesTouching(parsed.volumes, toIndex(join(dumps, 'latest'))).size + 3);

  const tools = toolLog(base, ['duplicity'], f.env.PATH);
  const target = mkdtempSync(join(base, 'target-'));
  const r = await cli(['--config', f.config, 'restore', 'site', 'site2', '--target', target], { env: { ...f.env, PATH: tools.path } });
  expect(r.code, r.stderr).toBe(0);
  const restored = tools
    .calls()
    .filter((c) => c.argv.includes('restore'))
    .map((c) => '/' + c.argv[c.argv.indexOf('--file-to-restore') + 1]!);
  expect(restored[0]).toBe(join(f.tree.home, 'site2'));
  // fs-acls.zst and latest sit after the binlog volumes: each its own run, never dumps.dir (or above) for both.
  expect(restored.slice(1, 3)).toEqual([join(dumps, 'fs-acls.zst'), join(dumps, 'latest')]);
  // The run's paths: its directory in one run where it shares their volumes, else one by one (where the data falls).
  const run = join(dumps, (JSON.parse(readFileSync(join(dumps, 'latest', 'manifest.json'), 'utf8')) as Manifest).runId);
  expect(restored.length).toBeGreaterThanOrEqual(4);
  for (const p of restored.slice(3)) expect(p === run || p.startsWith(run + '/'), p).toBe(true);
  expect(new Set(restored).size).toBe(restored.length);

  // Exact: every backed-up entry of site2 as it is on disk, and the site's dumps as the run wrote them (restore checked their sha256).
  const rels = f.tree.included.filter((p) => /^home\/virtual\/site2\//.test(p));
  const content = (m: Map<string, { type: string; size: number; sha256?: string; symlinkTarget?: string }>) =>
    [...m.values()].map((e) => ({ type: e.type, size: e.size, sha256: e.sha256, symlinkTarget: e.symlinkTarget }));
  const [live, back] = await Promise.all([snapshotTree(f.root, rels), snapshotTree(target, rels.map((p) => p.replace(/^home\/virtual\//, '')))]);
  expect(back.size).toBe(rels.length);
  expect(content(back)).toEqual(content(live));
  const manifest = JSON.parse(readFileSync(join(target, 'site2/dumps/manifest.json'), 'utf8')) as Manifest;
  const own = manifest.entries.filter((e) => e.site === 'site2' && e.object === 'database');
  expect(own.length).toBeGreaterThan(0);
  for (const e of own) expect(readFileSync(join(target, 'site2/dumps', e.path!)).length).toBe(e.bytes);
}, 600_000);
