import { distance } from 'fastest-levenshtein';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { ZodIssue } from 'zod';
import { ConfigError } from '../errors.js';
import { DEFAULT_CONFIG_FILE, resolvePaths, underRoot, type ResolvedPaths } from './paths.js';
import { configSchema, type Config } from './schema.js';

export interface LoadedConfig {
  readonly config: Config;
  /** The file read, or undefined when none existed and defaults apply. */
  readonly file: string | undefined;
  readonly paths: ResolvedPaths;
  /** The line of a dotted key in the file (`restic.repository`), or of its nearest parent present. */
  readonly lineOf?: (key: string) => number | undefined;
}

export interface LoadOptions {
  /** --config */
  file?: string;
  /** --root: overrides paths.root and is where the default config file is looked for. */
  root?: string;
  env?: NodeJS.ProcessEnv;
}

/** Which file to read: --config, then $APISCP_BACKUP_CONFIG, then the default under the root. */
export function configFileFor(options: LoadOptions): { file: string; explicit: boolean } {
  const env = options.env ?? process.env;
  // Absolute from here on: the path is written into other tools' configs (Bacula's RunScript, the
  // cron entry, the wrapper), which run elsewhere, where a relative path names another file.
  if (options.file) return { file: resolve(options.file), explicit: true };
  if (env.APISCP_BACKUP_CONFIG) return { file: resolve(env.APISCP_BACKUP_CONFIG), explicit: true };
  return { file: underRoot(options.root ?? '/', DEFAULT_CONFIG_FILE), explicit: false };
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const { file, explicit } = configFileFor(options);
  if (!existsSync(file)) {
    if (explicit) throw new ConfigError(`${file}: no such file`, file);
    return finish(parseConfigText('', undefined), undefined, options.root);
  }
  // Node's raw EISDIR says nothing about what was expected instead.
  if (statSync(file).isDirectory()) throw new ConfigError(`${file}: is a directory; --config takes the configuration file itself (e.g. ${join(file, 'config.yaml')})`, file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, file);
  }
  return finish(parseConfigText(text, file), file, options.root, keyLines(text));
}

function finish(config: Config, file: string | undefined, root: string | undefined, lineOf?: (key: string) => number | undefined): LoadedConfig {
  const effective = root ? { ...config, paths: { ...config.paths, root } } : config;
  return { config: effective, file, paths: resolvePaths(effective), lineOf };
}

/** Line lookup for a valid file: a key absent from the file gives its nearest parent's line. */
export function keyLines(text: string): (key: string) => number | undefined {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  return (key) => {
    const path = key.split('.');
    for (let n = path.length; n > 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range) {
        // A mapping's range starts at its first child: the key itself is what an admin looks for.
        const parent = n > 1 ? doc.getIn(path.slice(0, n - 1), true) : doc.contents;
        if (isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === path[n - 1]);
          const range = isScalar(pair?.key) ? pair.key.range : undefined;
          if (range) return lines.linePos(range[0]).line;
        }
        return lines.linePos(node.range[0]).line;
      }
    }
    return undefined;
  };
}

/** Parse and validate YAML text; errors name the file, line, key and problem. */
export function parseConfigText(text: string, file: string | undefined): Config {
  const where = file ?? 'config';
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = lines.linePos(e.pos[0]).line;
    throw new ConfigError(`${where}:${line}: invalid YAML: ${e.message.split('\n')[0]}`, file, undefined, line);
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${where}:1: the configuration must be a mapping of keys`, file, undefined, 1);
  }
  const parsed = configSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  // Every problem at once, one line each, in file order: fixing them one run at a time wastes the admin's hour.
  const all = parsed.error.issues.flatMap((i): ZodIssue[] => (i.code === 'unrecognized_keys' ? i.keys.map((k) => ({ ...i, keys: [k] })) : [i])).map((i) => describeIssue(i, doc, lines)).sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  const first = all[0]!;
  throw new ConfigError(all.map((d) => `${where}:${d.line ?? '?'}: ${d.key}: ${d.problem}`).join('\n'), file, first.key, first.line);
}

function describeIssue(issue: ZodIssue, doc: Document, lines: LineCounter): { key: string; line: number | undefined; problem: string } {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const unknown = issue.keys[0]!;
    const parent = path.length ? doc.getIn(path, true) : doc.contents;
    let line: number | undefined;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === unknown);
      const range = isScalar(pair?.key) ? pair.key.range : undefined;
      if (range) line = lines.linePos(range[0]).line;
    }
    const known = knownKeys(path);
    const guess = closest(unknown, known);
    return {
      key: [...path, unknown].join('.'),
      line,
      problem: `unknown key${guess ? ` (did you mean '${guess}'?)` : ''}`,
    };
  }
  const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
  let line = node?.range ? lines.linePos(node.range[0]).line : undefined;
  if (line === undefined && path.length > 1) {
    const parent = doc.getIn(path.slice(0, -1), true) as { range?: [number, number, number] } | undefined;
    if (parent?.range) line = lines.linePos(parent.range[0]).line;
  }
  return { key: path.join('.') || '(top level)', line, problem: issue.message };
}

function knownKeys(path: string[]): string[] {
  // Walk the schema's shape along the path to list valid siblings for a "did you mean".
  let shape: unknown = configSchema.shape;
  for (const part of path) {
    const next = (shape as Record<string, unknown>)[part];
    shape = unwrapShape(next);
    if (!shape) return [];
  }
  return Object.keys(shape as object);
}

function unwrapShape(schema: unknown): unknown {
  let s = schema as { _def?: { innerType?: unknown; typeName?: string }; shape?: unknown } | undefined;
  for (let i = 0; i < 5 && s; i++) {
    if (s.shape) return s.shape;
    s = s._def?.innerType as typeof s;
  }
  return undefined;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

