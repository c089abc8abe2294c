/**
 * The run directory's life on a real temp dir (README "Dumps on disk"): written as
 * `<id>.inprogress/` until complete, `latest` never moves to a failed run, crash leftovers and
 * interrupted runs leave nothing behind, and a failure leaves the previous runs byte for byte.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DumpStorageError } from '../../lib/errors.js';
import { memoryLogger } from '../../lib/log.js';
import type { Manifest, ManifestEntry } from '../../lib/model/manifest.js';
import { openRunDirectory } from '../../lib/dumps/run-directory.js';
import { readManifestFile, readManifestIfAny } from '../../lib/dumps/manifest-file.js';
import { NotEnoughSpaceError } from '../../lib/dumps/space.js';

function entry(database: string, status: 'ok' | 'failed'): ManifestEntry {
  return {
    kind: 'mysql',
    object: 'database',
    database,
    site: 'site1',
    format: 'sql',
    compression: 'zstd',
    startedAt: '2026-12-01T03:00:00.000Z',
    durationMs: 1,
    status,
    ...(status === 'ok' ? { path: `site1/mysql/${database}.sql.zst`, bytes: 4, sha256: 'x' } : { error: { message: 'boom' } }),
  };
}

/** A complete run written by hand, as an earlier night left it, with `latest` on it. */
function previousRun(dumpsDir: string, runId: string, bytes = 4): void {
  mkdirSync(join(dumpsDir, runId, 'site1/mysql'), { recursive: true });
  writeFileSync(join(dumpsDir, runId, 'site1/mysql/shop.sql.zst'), 'dump');
  const manifest = { version: 1, runId, host: 'h', tool: 'apiscp-backup', startedAt: '2026-11-30T03:00:00.000Z', finishedAt: '2026-11-30T03:01:00.000Z', status: 'complete', method: 'native', entries: [{ ...entry('shop', 'ok'), bytes }] };
  writeFileSync(join(dumpsDir, runId, 'manifest.json'), JSON.stringify(manifest));
  symlinkSync(runId, join(dumpsDir, 'latest'));
}

/** Every path under dir with its content's hash (files) or target (symlinks): "byte-identical". */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = lstatSync(p);
      const key = relative(dir, p);
      if (s.isSymbolicLink()) out[key] = `-> ${readlinkSync(p)}`;
      else if (s.isDirectory()) (out[key] = `dir ${(s.mode & 0o7777).toString(8)}`), walk(p);
      else out[key] = `${(s.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

const scratchDirs: string[] = [];
afterAll(() => scratchDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDumpsDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'asb-rundir-'));
  scratchDirs.push(dir);
  return dir;
};
const OLD = '20261130T030000Z';
const AT = new Date('2026-12-01T03:00:00Z');

describe('run directory', () => {
  it('writes into <id>.inprogress, then completes as <id> with its manifest and moves latest to it', async () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1.5, startedAt: AT });
    expect(run.runId).toBe('20261201T030000Z');
    expect(run.path).toBe(join(dumpsDir, '20261201T030000Z.inprogress'));
    expect(statSync(run.path).mode & 0o777).toBe(0o700);
    expect(run.previous?.runId).toBe(OLD);
    writeFileSync(join(run.path, 'a.sql'), 'a');
    run.add(entry('b', 'ok'));
    run.add(entry('a', 'ok'));
    // Not complete yet: latest still on the previous run, no final name.
    expect(readlinkSync(join(dumpsDir, 'latest'))).toBe(OLD);
    expect(existsSync(join(dumpsDir, run.runId))).toBe(false);
    const done = await run.complete({ method: 'native', servers: [], missing: [], warnings: [] });
    expect(done.ok).toBe(true);
    expect(done.dir).toBe(join(dumpsDir, '20261201T030000Z'));
    expect(existsSync(run.path)).toBe(false);
    expect(readFileSync(join(done.dir, 'a.sql'), 'utf8')).toBe('a');
    const onDisk = JSON.parse(readFileSync(join(done.dir, 'manifest.json'), 'utf8')) as Manifest;
    expect(onDisk).toEqual(done.manifest);
    expect(onDisk).toMatchObject({ version: 1, runId: '20261201T030000Z', status: 'complete', startedAt: AT.toISOString(), method: 'native' });
    expect(onDisk.entries.map((e) => e.database)).toEqual(['a', 'b']);
    expect(readlinkSync(join(dumpsDir, 'latest'))).toBe('20261201T030000Z');
  });

  it('a run with a failed dump is kept as a failed run, and latest stays on the last complete one', async () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    const before = snapshot(join(dumpsDir, OLD));
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    run.add(entry('a', 'ok'));
    run.add(entry('b', 'failed'));
    const done = await run.complete({ method: 'native' });
    expect(done.ok).toBe(false);
    expect(JSON.parse(readFileSync(join(done.dir, 'manifest.json'), 'utf8')).status).toBe('failed');
    expect(readlinkSync(join(dumpsDir, 'latest'))).toBe(OLD);
    expect(snapshot(join(dumpsDir, OLD))).toEqual(before);
  });

  it('removes the .inprogress directories a crash left, never a finished run', () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    mkdirSync(join(dumpsDir, '20261129T030000Z.inprogress/site1/mysql'), { recursive: true });
    writeFileSync(join(dumpsDir, '20261129T030000Z.inprogress/site1/mysql/half.sql.zst'), 'half');
    const before = snapshot(join(dumpsDir, OLD));
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    expect(readdirSync(dumpsDir).sort()).toEqual([OLD, `${run.runId}.inprogress`, 'latest'].sort());
    expect(snapshot(join(dumpsDir, OLD))).toEqual(before);
  });

  it('abandon() (an interruption) removes the unfinished directory and nothing else', () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    const before = snapshot(dumpsDir);
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    mkdirSync(join(run.path, 'site1'));
    writeFileSync(join(run.path, 'site1/x.sql'), 'x');
    run.add(entry('x', 'ok'));
    run.abandon();
    expect(snapshot(dumpsDir)).toEqual(before);
    expect(() => run.add(entry('y', 'ok'))).toThrow(/abandoned/);
  });

  it('a second run in the same second gets its own name instead of colliding', async () => {
    const dumpsDir = tempDumpsDir();
    const first = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    await first.complete({ method: 'native' });
    const second = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    const third = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    expect([first.runId, second.runId, third.runId]).toEqual(['20261201T030000Z', '20261201T030000Z-1', '20261201T030000Z-2']);
  });

  it('a failure at the end (the final name taken) is a DumpStorageError; abandon() leaves the previous runs byte-identical', async () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    writeFileSync(join(run.path, 'a.sql'), 'a');
    run.add(entry('a', 'ok'));
    // Something else took the final name after the id was chosen: rename(2) fails with ENOTEMPTY.
    mkdirSync(join(dumpsDir, run.runId));
    writeFileSync(join(dumpsDir, run.runId, 'squatter'), 's');
    const before = snapshot(dumpsDir);
    delete before[`${run.runId}.inprogress`];
    delete before[`${run.runId}.inprogress/a.sql`];
    const err = await run.complete({ method: 'native' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DumpStorageError);
    expect((err as DumpStorageError).message).toMatch(new RegExp(`cannot finish run ${run.runId} in ${dumpsDir}`));
    run.abandon();
    expect(snapshot(dumpsDir)).toEqual(before);
    expect(readlinkSync(join(dumpsDir, 'latest'))).toBe(OLD);
  });

  it('not enough space: fails before it creates anything, naming the directory', () => {
    const dumpsDir = tempDumpsDir();
    // The previous run "wrote" 1 PiB: no test machine has that free.
    previousRun(dumpsDir, OLD, 2 ** 50);
    const before = snapshot(dumpsDir);
    expect(() => openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT })).toThrow(NotEnoughSpaceError);
    expect(snapshot(dumpsDir)).toEqual(before);
  });

  it('retention runs only on a complete directory, and never removes the run just written', async () => {
    const dumpsDir = tempDumpsDir();
    previousRun(dumpsDir, OLD);
    const run = openRunDirectory(dumpsDir, { spaceMargin: 1, startedAt: AT });
    const policy = { keep: 1, keepGoneMs: 0, log: memoryLogger(), exists: () => false };
    expect(() => run.retain(policy)).toThrow(/retain\(\) after it was open/);
    run.add(entry('shop', 'ok'));
    await run.complete({ method: 'native' });
    // keep 1 and `shop` dumped again: the older run goes, the new one stays.
    expect(run.retain(policy)).toEqual([OLD]);
    expect(readdirSync(dumpsDir).sort()).toEqual([run.runId, 'latest']);
  });
});

describe('reading a manifest (lib/dumps/manifest-file.ts)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'asb-manifest-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, 'manifest.json'), text);
    return join(dir, name);
  };

  it('reads a run an older commit wrote (test/fixtures/compat), refuses a newer format by name, and a file that is no manifest', () => {
    const fixture = join(import.meta.dirname, '../fixtures/compat/run');
    const old = readManifestFile(join(fixture, readdirSync(fixture)[0]!));
    expect(old.version).toBe(1);
    expect(old.entries.length).toBeGreaterThan(3);
    const newer = write('newer', JSON.stringify({ version: 2, runId: 'x', entries: [] }));
    expect(() => readManifestFile(newer)).toThrow(/written by a newer apiscp-backup \(manifest version 2; this one reads up to 1\)/);
    expect(readManifestIfAny(newer)).toBeUndefined();
    expect(() => readManifestFile(write('foreign', '{"name":"something else"}'))).toThrow(/is not a manifest of apiscp-backup/);
    expect(readManifestIfAny(join(dir, 'missing'))).toBeUndefined();
  });
});
