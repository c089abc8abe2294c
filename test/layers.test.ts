import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  it('lib/ has no cycle, no upward or sibling import, no folder outside the layers, and spawns only in lib/proc', () => {
    const { modules, found } = violations(REPO);
    expect(modules).toBeGreaterThan(150);
    expect(found).toEqual([]);
  });

  it('the rules see a cycle, an upward import, a sibling import, a folder no layer names a spawn outside lib/proc and one in lib/proc outside child.ts', () => {
    const files: Record<string, string> = {
      'lib/errors.js': "import { dumpPlan } from './dumps/run-dumps.js';\nexport const e = 1;\n",
      'lib/plan/plan.js': "import { dumpPlan } from '../dumps/run-dumps.js';\nimport { k } from '../model/kind.js';\nexport const p = [dumpPlan, k];\n",
      'lib/model/kind.js': 'export const k = 1;\n',
      'lib/dumps/run-dumps.js': "import { execa } from 'execa';\nexport const dumpPlan = execa;\n",
      'lib/dumps/a.js': "import { b } from './b.js';\nexport const a = b;\n",
      'lib/dumps/b.js': "import { a } from './a.js';\nexport const b = a;\n",
      'lib/panel/x.js': "export { holder } from '../lock/lock.js';\n",
      'lib/lock/lock.js': "const cp = await import('node:child_process');\nexport const holder = cp;\n",
      'lib/proc/run.js': "import { spawn } from 'node:child_process';\nexport const run = spawn;\n",
      'lib/widgets/w.js': "import { run } from '../proc/run.js';\nexport const w = run;\n",
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
      'no-layer: lib/widgets/w.js -> lib/proc/run.js',
      'one-spawn-site: lib/proc/run.js -> child_process',
      'only-proc-spawns: lib/dumps/run-dumps.js -> node_modules/execa/index.js',
      'only-proc-spawns: lib/lock/lock.js -> child_process',
    ]);
  });

  it('a kind is reached through lib/kinds/index.ts or its own index.ts, a module inside a kind through its index, and one kind does not import another', () => {
    const files: Record<string, string> = {
      'lib/kinds/index.js': "import { a } from './a/index.js';\nexport const all = [a];\n",
      'lib/kinds/a/index.js': "import { q } from './sql.js';\nimport { l } from './load/index.js';\nimport { w } from './load/wire.js';\nexport const a = [q, l, w];\n",
      'lib/kinds/a/load/index.js': "import { w } from './wire.js';\nexport const l = w;\n",
      'lib/kinds/a/load/wire.js': 'export const w = 1;\n',
      'lib/kinds/a/sql.js': 'export const q = 1;\n',
      'lib/kinds/b/index.js': "import { q } from '../a/sql.js';\nexport const b = q;\n",
      'lib/verify/v.js': "import { all } from '../kinds/index.js';\nimport { a } from '../kinds/a/index.js';\nimport { q } from '../kinds/a/sql.js';\nexport const v = [all, a, q];\n",
      'tsconfig.json': '{"compilerOptions":{"allowJs":true},"include":["lib"]}',
    };
    const dir = join(scratch, 'kinds-tree');
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    expect(violations(dir).found).toEqual([
      'kind-module-through-its-index: lib/kinds/a/index.js -> lib/kinds/a/load/wire.js',
      'kind-through-its-index: lib/verify/v.js -> lib/kinds/a/sql.js',
      'kinds-apart: lib/kinds/b/index.js -> lib/kinds/a/sql.js',
    ]);
  });
});

// Each kind answers for itself (lib/kinds, behind DatabaseKind): a file elsewhere that compares
// with a kind's name is a branch a new kind would have to find and extend.
// A table keyed by every kind's name (Record<KindName, …>) is the same branch written as data;
// a comparison with one kind object's name (mysqlKind.name) is one too.
const KIND_BRANCH = /(?:[!=]==?\s*['"`](?:mysql|postgresql)['"`])|(?:['"`](?:mysql|postgresql)['"`]\s*[!=]==?)|(?:case\s+['"`](?:mysql|postgresql)['"`])|(?:[!=]==?\s*\w+Kind\.name\b)|(?:\w+Kind\.name\s*[!=]==?)|(?:Record<KindName\b)/;

function kindBranches(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) {
        if (rel !== 'lib/kinds') walk(rel);
      } else if (/\.[jt]s$/.test(e.name)) {
        readFileSync(join(root, rel), 'utf8').split('\n').forEach((line, i) => {
          if (KIND_BRANCH.test(line)) found.push(`${rel}:${i + 1}: ${line.trim()}`);
        });
      }
    }
  };
  walk('lib');
  return found;
}

describe("no file outside lib/kinds branches on a kind's name", () => {
  it('lib/ compares with no kind name outside lib/kinds', () => {
    expect(kindBranches(REPO)).toEqual([]);
  });

  it("the check sees ===, !== and case on a kind name, a kind object's name and a Record keyed by every kind, and leaves lib/kinds alone", () => {
    const dir = join(scratch, 'branch-tree');
    const files: Record<string, string> = {
      'lib/verify/a.ts': "if (entry.kind === 'mysql') load();\n",
      'lib/throwaway/b.ts': "const pg = 'postgresql' !== kind;\nswitch (k) {\n  case \"mysql\": break;\n}\nconst fine = kind.name;\n",
      'lib/kinds/mysql/index.ts': "if (name === 'mysql') ok();\n",
      'lib/binlog/c.ts': "if (e.kind !== mysqlKind.name) continue;\nconst same = postgresqlKind.name === k;\nconst start: Record<KindName, () => void> = { mysql, postgresql };\nrestore({ kind: mysqlKind.name });\n",
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    expect(kindBranches(dir)).toEqual([
      'lib/binlog/c.ts:1: if (e.kind !== mysqlKind.name) continue;',
      'lib/binlog/c.ts:2: const same = postgresqlKind.name === k;',
      'lib/binlog/c.ts:3: const start: Record<KindName, () => void> = { mysql, postgresql };',
      'lib/throwaway/b.ts:1: const pg = \'postgresql\' !== kind;',
      'lib/throwaway/b.ts:3: case "mysql": break;',
      "lib/verify/a.ts:1: if (entry.kind === 'mysql') load();",
    ]);
  });
});
