/**
 * The engine's own progress on a terminal for borg and duplicity (issue 28 item 1), through the
 * BUILT CLI in a real terminal (tmux, 120x40): `run` shows borg's and duplicity's own numbers while
 * they back up and a summary naming the archive / the backup set; `restore files` from borg shows
 * borg extract's percent while it fetches. Under `env -i` with plain pipes (cron) the same runs
 * print nothing, exit 0, and the tools are not even asked for progress (their argv, logged by
 * wrappers: test/helpers/tool-log.ts).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, sandboxPool, type Sandbox } from '../helpers/sandbox.js';
import { keep, watchInTerminal } from '../helpers/terminal.js';
import { toolLog, type ToolLog } from '../helpers/tool-log.js';

const pool = sandboxPool({ sites: { site1: { mysql: ['a_wp'] } } });

let mariadb: Awaited<ReturnType<typeof pool.start>>['mariadb'];

beforeAll(async () => {
  const servers = await pool.start();
  mariadb = servers.mariadb;
  await servers.mariadb.sql(`
    CREATE DATABASE a_wp; USE a_wp;
    CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100)) ENGINE=InnoDB;
    INSERT INTO posts VALUES (1, 'hello'), (2, 'world');
  `);
});

afterAll(() => pool.destroy());

const BIG = 'var/www/html/ballast.bin';

/** A sandbox for `engine` with ~96 MiB that neither compress nor deduplicate in site1's files, and the tools' argv logged. */
async function engineSandbox(engine: 'borg' | 'duplicity'): Promise<{ sb: Sandbox; tools: ToolLog; repo: string }> {
  const sb = await pool.sandbox();
  const secret = join(sb.root, 'etc/apiscp-backup/passphrase');
  writeFileSync(secret, 'correct horse\n', { mode: 0o600 });
  const repo = join(sb.root, 'repo');
  const engineConfig = engine === 'borg' ? { borg: { repository: repo, passphrase_file: secret, compression: 'lz4' } } : { duplicity: { target: `file://${repo}`, passphrase_file: secret } };
  sb.writeConfig({ engine, ...engineConfig, databases: { postgresql: { enabled: false } } });
  const shadow = join(sb.root, 'home/virtual/site1/shadow');
  mkdirSync(join(shadow, 'var/www/html'), { recursive: true });
  mkdirSync(join(sb.root, 'home/virtual/site1/info'), { recursive: true });
  writeFileSync(join(shadow, BIG), randomBytes(96 * 2 ** 20));
  const tools = toolLog(sb.root, [engine]);
  if (engine === 'borg') expect((await sb.cli(['repo-init'])).exitCode).toBe(0);
  return { sb, tools, repo };
}

/** The sandbox's environment as the CLI gets it, with the tool wrappers first on cron's PATH. */
function envOf(sb: Sandbox, tools: ToolLog): Record<string, string | undefined> {
  return { ...sb.env, PATH: tools.path.replace(/:.*$/, ':/usr/sbin:/usr/bin:/sbin:/bin') };
}

/** The CLI in the terminal, the screen captured every 50 ms until it exits. */
function watch(sb: Sandbox, tools: ToolLog, args: readonly string[]): Promise<{ code: number; screens: string[]; end: string }> {
  return watchInTerminal(['--config', sb.configFile, ...args], envOf(sb, tools), { timeoutMs: 200_000 });
}

/** As cron runs it: env -i, no terminal, pipes. */
async function cron(sb: Sandbox, tools: ToolLog, args: readonly string[]): Promise<{ code: number; out: string; err: string }> {
  const env = Object.entries(envOf(sb, tools)).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
  const r = await execa('env', ['-i', ...env, process.execPath, CLI, '--config', sb.configFile, ...args], { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', timeout: 200_000 });
  return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
}

const lines = (screen: string): string[] => screen.split('\n').map((l) => l.trimEnd()).filter(Boolean);
const argvOf = (tools: ToolLog, tool: string, action: string): string[][] => tools.calls().filter((c) => c.tool === tool && c.argv.includes(action)).map((c) => c.argv);

describe('borg on a terminal', () => {
  let sb: Sandbox;
  let tools: ToolLog;
  let repo: string;
  beforeAll(async () => {
    ({ sb, tools, repo } = await engineSandbox('borg'));
  }, 120_000);

  it('run: borg\'s own sizes and files while it backs up; at the end the phase line and the archive', async () => {
    const { code, screens, end } = await watch(sb, tools, ['run']);
    expect(code, end).toBe(0);
    const seen = screens.filter((s) => /run borg backup\s+\d+\.\d\d MiB read, \d+\.\d\d MiB new, \d+ files {2}\S/.test(s));
    expect(seen.length, screens.filter((s) => s.includes('borg')).at(-1)).toBeGreaterThan(0);
    // Numbers from borg, mid-run: some read (its first line comes before the first file is read).
    const read = seen.map((s) => Number(/(\d+\.\d\d) MiB read/.exec(s)![1]));
    expect(Math.max(...read), seen.at(-1)).toBeGreaterThan(0);
    keep('run-borg', seen.find((s) => /[1-9]\d*\.\d\d MiB read/.test(s)) ?? seen.at(-1)!);
    keep('run-borg-end', end);
    const archives = execFileSync('borg', ['list', '--short', repo], { env: { ...process.env, BORG_PASSPHRASE: 'correct horse' }, encoding: 'utf8' }).trim().split('\n');
    expect(archives).toHaveLength(1);
    const end_ = lines(end);
    expect(end_).toContainEqual(expect.stringMatching(/^backup\s+borg backup took \d+\.\d s$/));
    expect(end_.at(-1), end).toMatch(new RegExp(`dump\\(s\\) written to .*; borg backup ${archives[0]!.replace(/[.]/g, '\\.')} \\(`));
    expect(argvOf(tools, 'borg', 'create').at(-1)).toEqual(expect.arrayContaining(['--progress', '--log-json']));
  }, 240_000);

  it('restore files: borg extract\'s percent beside the fetching step', async () => {
    const target = join(sb.root, 'restored');
    const { code, screens, end } = await watch(sb, tools, ['restore', 'files', 'site1', `/${BIG}`, '--target', target]);
    expect(code, end).toBe(0);
    const seen = screens.find((s) => /restore files fetching site1's files from [\s\S]*\s+\d+\.\d% Extracting: /.test(s));
    expect(seen, screens.filter((s) => s.includes('fetching')).at(-1)).toBeDefined();
    keep('restore-files-borg', seen!);
    expect(readFileSync(join(target, 'site1/shadow', BIG)).equals(readFileSync(join(sb.root, 'home/virtual/site1/shadow', BIG)))).toBe(true);
    expect(argvOf(tools, 'borg', 'extract').at(-1)).toEqual(expect.arrayContaining(['--progress', '--log-json']));
  }, 240_000);

  it('restore db from the archive: borg extract is asked for its progress on a terminal, the database comes back', async () => {
    const archive = execFileSync('borg', ['list', '--short', repo], { env: { ...process.env, BORG_PASSPHRASE: 'correct horse' }, encoding: 'utf8' }).trim().split('\n').at(-1)!;
    const extractsBefore = argvOf(tools, 'borg', 'extract').length;
    const { code, end } = await watch(sb, tools, ['restore', 'db', 'a_wp', '--from', archive, '--into', 'a_wp_from_borg']);
    expect(code, end).toBe(0);
    const extracts = argvOf(tools, 'borg', 'extract');
    expect(extracts.length, end).toBeGreaterThan(extractsBefore);
    expect(extracts.at(-1)).toEqual(expect.arrayContaining(['--progress', '--log-json']));
    expect((await mariadb.sql('SELECT GROUP_CONCAT(title ORDER BY id) FROM a_wp_from_borg.posts')).trim()).toBe('hello,world');
  }, 240_000);

  it('under cron: run and restore files print nothing, exit 0, and borg is asked for no progress', async () => {
    const before = tools.calls().length;
    const run = await cron(sb, tools, ['run']);
    expect(run).toEqual({ code: 0, out: '', err: '' });
    const restored = await cron(sb, tools, ['restore', 'files', 'site1', `/${BIG}`, '--target', join(sb.root, 'restored-cron')]);
    expect(restored.code, restored.err).toBe(0);
    expect(restored.err).toBe('');
    const calls = tools.calls().slice(before).filter((c) => c.tool === 'borg');
    expect(calls.map((c) => c.argv[0])).toEqual(expect.arrayContaining(['create', 'extract']));
    for (const c of calls) expect(c.argv).not.toEqual(expect.arrayContaining(['--progress']));
    for (const c of calls) expect(c.argv).not.toEqual(expect.arrayContaining(['--log-json']));
  }, 240_000);
});

describe('duplicity on a terminal', () => {
  let sb: Sandbox;
  let tools: ToolLog;
  beforeAll(async () => {
    ({ sb, tools } = await engineSandbox('duplicity'));
  }, 120_000);

  it('run: duplicity\'s own progress (percent, bytes, rate, time left) while it backs up; at the end the backup set', async () => {
    const { code, screens, end } = await watch(sb, tools, ['run']);
    expect(code, end).toBe(0);
    keep('run-duplicity-end', end);
    const seen = screens.find((s) => /run duplicity backup\s+\d+% done, \d+(\.\d+)? (KB|MB|GB) written in \d\d:\d\d:\d\d, \d+(\.\d+)? (B|KB|MB|GB)\/s(, about .+ left|, stalled)?  /.test(s));
    expect(seen, screens.filter((s) => s.includes('duplicity')).at(-1)).toBeDefined();
    keep('run-duplicity', seen!);
    // The set duplicity itself lists: its time is the name the summary gives (what restore --from takes).
    const list = await sb.cli(['list', '--json']);
    expect(list.exitCode, list.stderr).toBe(0);
    const points = (JSON.parse(list.stdout) as { backups: { id: string }[] }).backups;
    expect(points).toHaveLength(1);
    const end_ = lines(end);
    expect(end_).toContainEqual(expect.stringMatching(/^backup\s+duplicity backup took \d+\.\d s$/));
    expect(end_.at(-1), end).toMatch(new RegExp(`dump\\(s\\) written to .*; duplicity backup ${points[0]!.id}`));
    expect(argvOf(tools, 'duplicity', '--full-if-older-than').at(-1)).toEqual(expect.arrayContaining(['--progress']));
  }, 240_000);

  it('under cron: run prints nothing, exits 0, and duplicity is asked for no progress', async () => {
    const before = tools.calls().length;
    expect(await cron(sb, tools, ['run'])).toEqual({ code: 0, out: '', err: '' });
    const calls = tools.calls().slice(before).filter((c) => c.tool === 'duplicity');
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) expect(c.argv).not.toContain('--progress');
  }, 240_000);
});
