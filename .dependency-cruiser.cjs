// Import rules for lib/ (docs/architecture.md, "Layers"), checked by test/layers.test.ts with
// dependency-cruiser: no cycles anywhere; a module imports only from layers below its own (units
// of one layer do not import each other; the files directly in lib/ are the foundation and may use
// each other); only lib/proc starts processes.

/** Lowest first. A folder of lib/ that is in no layer is an error too. */
const LAYERS = [
  ['proc'],
  ['config'],
  ['model'],
  ['throwaway'],
  ['lock', 'panel'],
  ['plan'],
  ['dumps'],
  ['kinds'],
  ['binlog'],
  ['engine'],
  ['report'],
  ['verify'],
  ['job', 'install', 'fleet'],
  ['demo', 'restore'],
  ['cli'],
];

const all = LAYERS.flat();
const layerRules = LAYERS.flatMap((units, i) =>
  units.map((unit) => {
    const notBelow = [...LAYERS.slice(i).flat()].filter((u) => u !== unit);
    return {
      name: `layer-${unit}`,
      comment: `lib/${unit} imports only from layers below it`,
      severity: 'error',
      from: { path: `^lib/${unit}/` },
      to: { path: `^lib/(${notBelow.join('|')})/` },
    };
  }),
).filter((r) => !r.to.path.startsWith('^lib/()/'));

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'foundation',
      comment: 'the files directly in lib/ use only each other',
      severity: 'error',
      from: { path: '^lib/[^/]+\\.[jt]s$' },
      to: { path: '^lib/[^/]+/' },
    },
    {
      name: 'no-layer',
      comment: 'a folder of lib/ no layer names (add it to docs/architecture.md and .dependency-cruiser.cjs)',
      severity: 'error',
      from: { path: `^lib/(?!(${all.join('|')})/)[^/]+/` },
      to: {},
    },
    {
      name: 'only-proc-spawns',
      comment: 'only lib/proc starts processes (node:child_process, execa, zx)',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/proc/' },
      to: { path: '^(node:)?child_process$|(^|/)node_modules/(execa|zx)/' },
    },
    {
      name: 'kind-through-its-index',
      comment: 'outside lib/kinds, a kind is reached through lib/kinds/index.ts or its own index.ts, never its files',
      severity: 'error',
      from: { path: '^lib/', pathNot: '^lib/kinds/' },
      to: { path: '^lib/kinds/[^/]+/.+', pathNot: '^lib/kinds/[^/]+/index\\.[jt]s$' },
    },
    {
      name: 'kind-module-through-its-index',
      comment: "a module inside a kind (the MariaDB loader, lib/kinds/mysql/load) is reached through its index.ts from the rest of the kind",
      severity: 'error',
      from: { path: '^lib/kinds/[^/]+/[^/]+\\.[jt]s$' },
      to: { path: '^lib/kinds/[^/]+/[^/]+/', pathNot: '/index\\.[jt]s$' },
    },
    {
      name: 'kinds-apart',
      comment: 'one kind does not import another (what they share is in model/ or lib/dumps)',
      severity: 'error',
      from: { path: '^lib/kinds/([^/]+)/' },
      to: { path: '^lib/kinds/', pathNot: '^lib/kinds/$1/' },
    },
    {
      name: 'one-spawn-site',
      comment: 'inside lib/proc, child.ts alone spawns (process-group.ts only names the ChildProcess type): the primitives start processes one way',
      severity: 'error',
      from: { path: '^lib/proc/', pathNot: '^lib/proc/(child|process-group)\\.[jt]s$' },
      to: { path: '^(node:)?child_process$|(^|/)node_modules/zx/' },
    },
    {
      name: 'one-execa-site',
      comment: 'inside lib/proc, run.ts alone uses execa (run a command, capture its output)',
      severity: 'error',
      from: { path: '^lib/proc/', pathNot: '^lib/proc/run\\.[jt]s$' },
      to: { path: '(^|/)node_modules/execa/' },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
