import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// Layers point one way (docs/architecture.md): a module imports only from layers below its own.
// The files directly in lib/ (errors, log, warnings…) are the foundation and may use each other.

const LIB = resolve(import.meta.dirname, '../lib');

/** Lowest first; the same list as in docs/architecture.md. */
const LAYERS: readonly (readonly string[])[] = [
  ['(root)'],
  ['run'],
  ['config'],
  ['model'],
  ['lock', 'panel'],
  ['plan'],
  ['dumps'],
  ['binlog'],
  ['engine'],
  ['report'],
  ['sandbox'],
  ['verify'],
  ['job', 'install', 'fleet'],
  ['demo', 'restore'],
  ['cli'],
];

const layerOf = new Map(LAYERS.flatMap((units, i) => units.map((u) => [u, i] as const)));

/** lib/dumps/mysql.ts → dumps; lib/errors.ts → (root). */
function unitOf(file: string): string {
  const parts = relative(LIB, file).split('/');
  return parts.length === 1 ? '(root)' : parts[0]!;
}

function libFiles(dir = LIB): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? libFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Relative imports of a module: static, re-exports and dynamic import(). */
function importsOf(text: string): string[] {
  return [...text.matchAll(/(?:\bfrom|\bimport\s*\(|^import)\s*['"](\.{1,2}\/[^'"]+)['"]/gm)].map((m) => m[1]!);
}

function violations(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    const from = unitOf(file);
    const a = layerOf.get(from);
    if (a === undefined) {
      out.push(`${relative(LIB, file)}: lib/${from} is in no layer (add it to docs/architecture.md and this test)`);
      continue;
    }
    for (const spec of importsOf(text)) {
      const target = normalize(join(dirname(file), spec));
      const to = unitOf(target);
      if (to === from) continue;
      const b = layerOf.get(to);
      if (b === undefined || b > a || (b === a && from !== '(root)')) out.push(`${relative(LIB, file)} (${from}) imports ${relative(LIB, target)} (${to})`);
    }
  }
  return out;
}

/** Modules that start processes: only lib/run may (architecture.md: every subprocess goes through lib/run). */
const SPAWNERS = /(?:\bfrom|\bimport\s*\(|^import|\brequire\s*\()\s*['"](node:child_process|child_process|execa|zx)['"]/gm;

function spawnViolations(files: ReadonlyMap<string, string>): string[] {
  return [...files].flatMap(([file, text]) => (unitOf(file) === 'run' ? [] : [...text.matchAll(SPAWNERS)].map((m) => `${relative(LIB, file)} imports ${m[1]} (only lib/run starts processes)`)));
}

describe('import directions in lib/', () => {
  it('no module imports from its own layer or above', () => {
    const files = new Map(libFiles().map((f) => [f, readFileSync(f, 'utf8')]));
    expect(files.size).toBeGreaterThan(50);
    expect(violations(files)).toEqual([]);
  });

  it('only lib/run imports node:child_process or execa', () => {
    const files = new Map(libFiles().map((f) => [f, readFileSync(f, 'utf8')]));
    expect(spawnViolations(files)).toEqual([]);
  });

  it('the subprocess check sees child_process, execa and zx outside lib/run, static or dynamic', () => {
    const f = (p: string): string => join(LIB, p);
    expect(
      spawnViolations(
        new Map([
          [f('dumps/x.ts'), "import { spawn, type ChildProcess } from 'node:child_process';"],
          [f('sandbox/y.ts'), "const { execa } = await import('execa');\nimport { $ } from \"zx\";"],
          [f('engine/z.ts'), "const cp = require('child_process');"],
          [f('run/child.ts'), "import { spawn } from 'node:child_process';\nimport { execa } from 'execa';"],
          [f('plan/w.ts'), "// mentions child_process in a comment, imports nothing"],
        ]),
      ),
    ).toEqual([
      "dumps/x.ts imports node:child_process (only lib/run starts processes)",
      'sandbox/y.ts imports execa (only lib/run starts processes)',
      'sandbox/y.ts imports zx (only lib/run starts processes)',
      'engine/z.ts imports child_process (only lib/run starts processes)',
    ]);
  });

  it('the check sees an upward import, a sibling import and a folder no layer names', () => {
    const f = (p: string): string => join(LIB, p);
    expect(
      violations(
        new Map([
          [f('plan/plan.ts'), "import { dumpPlan } from '../dumps/run-dumps.js';\nimport type { X } from '../model/kind.js';"],
          [f('panel/x.ts'), "export { holder } from '../lock/lock.js';"],
          [f('cli/main.ts'), "const m = await import('../job/backup-job.js');"],
          [f('widgets/w.ts'), ''],
        ]),
      ),
    ).toEqual([
      'plan/plan.ts (plan) imports dumps/run-dumps.js (dumps)',
      'panel/x.ts (panel) imports lock/lock.js (lock)',
      'widgets/w.ts: lib/widgets is in no layer (add it to docs/architecture.md and this test)',
    ]);
  });
});
