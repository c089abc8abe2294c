import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// Import rules of lib/ (docs/architecture.md, "Layers"): .dependency-cruiser.cjs holds them, this
// runs dependency-cruiser on lib/ and, so the check is known to bite, on a tree that breaks each.

const REPO = resolve(import.meta.dirname, '..');
const CONFIG = join(REPO, '.dependency-cruiser.cjs');
const BIN = join(REPO, 'node_modules/.bin/depcruise');

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
  cycle?: { name: string }[];
}

function violations(cwd: string): { modules: number; found: string[] } {
  const out = execFileSync(BIN, ['lib', '--config', CONFIG, '--output-type', 'json'], { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const result = JSON.parse(out) as { summary: { violations: Violation[]; totalCruised: number } };
  const found = result.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`).sort();
  return { modules: result.summary.totalCruised, found };
}

const scratch = mkdtempSync(join(tmpdir(), 'layers-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('import rules of lib/ (dependency-cruiser)', () => {
  it('lib/ has no cycle, no upward or sibling import, no folder outside the layers, and spawns only in lib/run', () => {
    const { modules, found } = violations(REPO);
    expect(modules).toBeGreaterThan(150);
    expect(found).toEqual([]);
  });

  it('the rules see a cycle, an upward import, a sibling import, a folder no layer names a spawn outside lib/run and one in lib/run outside child.ts', () => {
    const files: Record<string, string> = {
      'lib/errors.js': "import { dumpPlan } from './dumps/run-dumps.js';\nexport const e = 1;\n",
      'lib/plan/plan.js': "import { dumpPlan } from '../dumps/run-dumps.js';\nimport { k } from '../model/kind.js';\nexport const p = [dumpPlan, k];\n",
      'lib/model/kind.js': 'export const k = 1;\n',
      'lib/dumps/run-dumps.js': "import { execa } from 'execa';\nexport const dumpPlan = execa;\n",
      'lib/dumps/a.js': "import { b } from './b.js';\nexport const a = b;\n",
      'lib/dumps/b.js': "import { a } from './a.js';\nexport const b = a;\n",
      'lib/panel/x.js': "export { holder } from '../lock/lock.js';\n",
      'lib/lock/lock.js': "const cp = await import('node:child_process');\nexport const holder = cp;\n",
      'lib/run/run.js': "import { spawn } from 'node:child_process';\nexport const run = spawn;\n",
      'lib/widgets/w.js': "import { run } from '../run/run.js';\nexport const w = run;\n",
      'node_modules/execa/package.json': '{"name":"execa","main":"index.js"}',
      'node_modules/execa/index.js': 'exports.execa = 1;\n',
      'tsconfig.json': '{"compilerOptions":{"allowJs":true},"include":["lib"]}',
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(scratch, path)), { recursive: true });
      writeFileSync(join(scratch, path), text);
    }
    expect(violations(scratch).found).toEqual([
      'foundation: lib/errors.js -> lib/dumps/run-dumps.js',
      'layer-panel: lib/panel/x.js -> lib/lock/lock.js',
      'layer-plan: lib/plan/plan.js -> lib/dumps/run-dumps.js',
      'no-circular: lib/dumps/a.js -> lib/dumps/b.js',
      'no-layer: lib/widgets/w.js -> lib/run/run.js',
      'one-spawn-site: lib/run/run.js -> child_process',
      'only-run-spawns: lib/dumps/run-dumps.js -> node_modules/execa/index.js',
      'only-run-spawns: lib/lock/lock.js -> child_process',
    ]);
  });
});
