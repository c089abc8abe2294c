import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError, EngineError, MissingDependencyError, tail } from '../errors.js';
import { cmd, quote } from '../proc/command.js';
import { exitClasses } from '../proc/exit-status.js';
import { run, type RunResult } from '../proc/run.js';
import { resolveTool, whichSystem } from '../proc/which.js';
import { borgJsonStderr } from './borg-log.js';
import { borgRsh, remoteContext, isRemoteRepository } from './remote.js';
import { runEngineTool } from './run-tool.js';
import { keepArgs, requestedPaths, type BackupPoint, type Engine, type EngineContext, type EngineResult } from './types.js';

/**
 * borg 1.2 keeps ACLs, xattrs and (with --numeric-ids) the numeric owners ApisCP needs: site
 * users exist in each site's own passwd, not the host's. The repository goes in BORG_REPO and
 * the passphrase is read by borg itself through BORG_PASSCOMMAND (`cat FILE`): never argv.
 */

/**
 * `{now}` alone has one-second resolution: two runs in the same second (a retry, a test, a
 * manual run beside cron) would collide and the second fail with "archive already exists".
 * Microseconds make each run's name its own; the prefix stays `{hostname}-` for prune.
 */
export const BORG_ARCHIVE = '{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}';

export function borgEnv(loaded: LoadedConfig): Record<string, string> {
  const b = loaded.config.borg;
  if (!b.repository) throw new ConfigError('borg.repository is not set (e.g. /backup/borg or ssh://host/./repo)', loaded.file, 'borg.repository');
  // Never wait for an answer on a terminal nobody watches (cron, Bacula): fail instead.
  const env: Record<string, string> = { BORG_REPO: b.repository, BORG_RELOCATED_REPO_ACCESS_IS_OK: 'no' };
  if (b.passphrase_file) env.BORG_PASSCOMMAND = `cat ${quote(b.passphrase_file)}`;
  const rsh = borgRsh(loaded);
  if (rsh) env.BORG_RSH = rsh;
  return env;
}

/** Concrete paths as `pp:` (no glob surprises with `[` in a name), patterns as `sh:`. */
/** Only archives this tool made on this host; borg 1.2 frees the space only with compact. */
export function borgPruneArgs(loaded: LoadedConfig, client?: string): string[] {
  return ['prune', '--glob-archives', `${client ?? '{hostname}'}-*`, ...keepArgs(loaded.config.borg.keep)];
}

export function borgPattern(exclude: string): string {
  return /[*?[]/.test(exclude) ? `sh:${exclude}` : `pp:${exclude}`;
}

export function borgCreateArgs(loaded: LoadedConfig, sources: readonly string[], excludes: readonly string[]): string[] {
  const b = loaded.config.borg;
  return [
    'create',
    '--json',
    '--numeric-ids',
    '--compression',
    b.compression,
    ...(b.checkpoint_interval ? ['--checkpoint-interval', String(b.checkpoint_interval)] : []),
    ...b.extra_args,
    ...excludes.flatMap((e) => ['--exclude', borgPattern(e)]),
    `::${BORG_ARCHIVE}`,
    ...sources,
  ];
}

export function borgLastArchiveArgs(): string[] {
  return ['list', '--short', '--last', '1'];
}

/** Paths in borg archives have no leading `/`: extracting in DIR gives DIR/<absolute path>. */
export function borgExtractArgs(loaded: LoadedConfig, archive: string): string[] {
  return ['extract', '--numeric-ids', ...loaded.config.borg.extra_args, `::${archive}`];
}

/** Our archives (`{hostname}-{now}`) of this server, or of `client` (another server's prefix). */
export function borgListArgs(client?: string): string[] {
  return ['list', '--json', '--glob-archives', `${client ?? '{hostname}'}-*`];
}

export function parseBorgList(stdout: string): BackupPoint[] {
  const j = JSON.parse(stdout) as { archives?: { name: string; start?: string; time?: string }[] };
  // borg 1.2 prints local time without a zone: JavaScript reads such a string as local time too.
  // A `.checkpoint` archive is what a broken run left: never a backup to restore from.
  return (j.archives ?? [])
    .filter((a) => !/\.checkpoint(\.\d+)?$/.test(a.name))
    .map((a) => ({ engine: 'borg' as const, id: a.name, time: new Date(a.start ?? a.time ?? 0).toISOString(), level: 'Snapshot' as const, chain: 1 }))
    .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
}

/** Only `paths` (as path prefixes, never patterns) of one archive; run in the staging dir. */
export function borgFetchArgs(loaded: LoadedConfig, archive: string, paths: readonly string[]): string[] {
  return ['extract', '--numeric-ids', ...loaded.config.borg.extra_args, `::${archive}`, ...paths.map((p) => `pp:${p.replace(/^\/+/, '')}`)];
}

const BORG_NO_REPO = /Repository .* does not exist|is not a valid repository/;

export function borgExitMessage(code: number | undefined, stderr = ''): string {
  if (code === undefined) return 'did not run';
  if (BORG_NO_REPO.test(stderr)) return 'no repository at BORG_REPO: create it once with `apiscp-backup repo-init`';
  if (/Failed to create\/acquire the lock|LockTimeout/.test(stderr)) return 'repository is locked by another borg (if none runs, `borg break-lock`)';
  if (/passphrase supplied in BORG_PASSPHRASE.*incorrect|passphrase.*incorrect/i.test(stderr)) return 'wrong passphrase (borg.passphrase_file)';
  if (code === 1) return 'warning (some files changed or could not be read)';
  if (code >= 128) return `killed by signal ${code - 128}`;
  return `error (exit ${code})`;
}

/** Exit 1 is borg's "warning": the archive was made (a file changed or vanished while read). */
const BORG_EXIT = exitClasses({ warning: [1] });

/**
 * `showProgress`: when someone watches (ctx.onProgress: a terminal), borg's own progress as it
 * comes, through --progress --log-json (./borg-log.ts); its stderr is then given back as the plain
 * text it would have been, so warnings and errors read the same. Otherwise (cron) borg runs as
 * it always did.
 */
async function runBorg(ctx: EngineContext, action: string, args: string[], cwd?: string, showProgress = false): Promise<RunResult> {
  const repository = ctx.loaded.config.borg.repository;
  const explain = (code: number | undefined, stderr: string): string => borgExitMessage(code, stderr) + remoteContext(repository, stderr);
  const json = showProgress && ctx.onProgress ? borgJsonStderr(ctx.onProgress) : undefined;
  const argv = json ? [args[0]!, '--progress', '--log-json', ...args.slice(1)] : args;
  const command = cmd(resolveTool('borg', 'borgbackup', 'borgbackup (EPEL)'), argv, { env: borgEnv(ctx.loaded), cwd });
  const r = await runEngineTool('borg', action, command, explain, { signal: ctx.signal, exitClass: BORG_EXIT, ...(json ? { onStderr: json.onStderr, stderrText: () => json.text() } : {}) });
  if (!json) return r;
  const stderr = json.text();
  return { ...r, stderr, stderrTail: tail(stderr) };
}

export function parseBorgCreate(stdout: string): { name?: string; id?: string; bytes?: number } {
  try {
    const j = JSON.parse(stdout) as { archive?: { name?: string; id?: string; stats?: { deduplicated_size?: number } } };
    return { name: j.archive?.name, id: j.archive?.id, bytes: j.archive?.stats?.deduplicated_size };
  } catch {
    return {};
  }
}

/** Retention on a repository we may delete from: this server's, or `client`'s on the backup host. */
export async function borgPrune(ctx: EngineContext, client?: string): Promise<void> {
  await runBorg(ctx, 'prune', borgPruneArgs(ctx.loaded, client));
  await runBorg(ctx, 'compact', ['compact']);
}

export const borgEngine: Engine = {
  name: 'borg',
  keepsAcls: true,
  drivesBackup: true,
  async check(ctx) {
    if (!whichSystem('borg')) throw new MissingDependencyError('borg', 'borgbackup', 'borgbackup (EPEL)');
    borgEnv(ctx.loaded);
    // Before any dump: a run without a repository would dump everything and only then fail.
    if ((await borgEngine.initialised!(ctx)) === false) throw new EngineError(`no borg repository at ${ctx.loaded.config.borg.repository}: create it once with \`apiscp-backup repo-init\``, 'borg');
  },
  async initialised(ctx) {
    // `borg config --list` reads the repository's config (no key, no passphrase needed), but only
    // of a local repository. A remote one is not probed: every command that reads its manifest
    // records it in the client's security directory, which after an append-only rollback on the
    // backup host (docs/offsite.md) makes borg refuse the repository; the backup's own error
    // names a missing one (undefined: cannot tell). --bypass-lock: a backup of the admin's own
    // holding the lock must not make it look missing.
    if (isRemoteRepository(ctx.loaded.config.borg.repository)) return undefined;
    const r = await run(cmd(resolveTool('borg', 'borgbackup', 'borgbackup (EPEL)'), ['--bypass-lock', 'config', '--list'], { env: borgEnv(ctx.loaded) }), { signal: ctx.signal, exitClass: exitClasses({ warning: [2] }) });
    if (r.exitCode === 0) return true;
    if (BORG_NO_REPO.test(r.stderr)) return false;
    throw new EngineError(`borg cannot open the repository ${ctx.loaded.config.borg.repository} (${borgExitMessage(r.exitCode, r.stderr)}): ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`, 'borg');
  },
  async backup(ctx): Promise<EngineResult> {
    const started = Date.now();
    const r = await runBorg(ctx, 'create', borgCreateArgs(ctx.loaded, ctx.sources, ctx.excludes), undefined, true);
    const created = parseBorgCreate(r.stdout);
    // Like restic without a snapshot id: no archive name in --json means we cannot say a backup exists.
    if (!created.name) throw new EngineError('borg create printed no archive name: no archive can be shown to exist', 'borg', { stdout: r.stdout.slice(-2000), stderr: r.stderr.slice(-2000) });
    const warnings = r.exitClass === 'warning' ? [`borg: ${borgExitMessage(1)}: ${r.stderr.split('\n').filter(Boolean).slice(-5).join('; ')}`] : [];
    for (const w of warnings) ctx.log.warn(w);
    return { level: 'Snapshot', durationMs: Date.now() - started, id: created.name, bytes: created.bytes, warnings };
  },
  async prune(ctx) {
    // An append-only repository keeps what we delete anyway, and a client that may delete is what
    // the append-only set-up takes away: retention runs on the backup host (prune --print).
    if (ctx.loaded.config.borg.append_only) {
      ctx.log.info('borg.append_only: retention runs on the backup host (apiscp-backup prune --print), not here');
      return;
    }
    await borgPrune(ctx);
  },
  async init(ctx) {
    // repokey: the key lives in the repository, protected by the passphrase; without a
    // passphrase file the repository is unencrypted (borg would otherwise prompt).
    const mode = ctx.loaded.config.borg.passphrase_file ? 'repokey-blake2' : 'none';
    const repo = ctx.loaded.config.borg.repository ?? '';
    // borg creates the repository directory but not its parents (restic creates both).
    if (repo.startsWith('/')) mkdirSync(dirname(repo), { recursive: true, mode: 0o700 });
    try {
      await runBorg(ctx, 'init', ['init', `--encryption=${mode}`]);
    } catch (err) {
      // A remote repository is not probed first (initialised()): borg says it exists.
      if (err instanceof EngineError && /already exists/i.test(err.message)) return `borg repository ${ctx.loaded.config.borg.repository} is already initialised: nothing to do`;
      throw err;
    }
    return `created borg repository ${ctx.loaded.config.borg.repository} (encryption ${mode})`;
  },
  async restore(ctx, dir) {
    const list = await runBorg(ctx, 'list', borgLastArchiveArgs());
    const archive = list.stdout.trim().split('\n').pop();
    if (!archive) throw new EngineError('borg repository has no archive to restore', 'borg');
    await runBorg(ctx, 'extract', borgExtractArgs(ctx.loaded, archive), dir);
  },
  async list(ctx, options) {
    return parseBorgList((await runBorg(ctx, 'list', borgListArgs(options?.client))).stdout);
  },
  async fetch(ctx, request) {
    // One extract for every path (borg reads the archive's item list once); a pattern that matches
    // nothing is borg's warning (exit 1), and fetchPaths checks that the required paths came.
    await runBorg(ctx, 'extract', borgFetchArgs(ctx.loaded, request.point.id, requestedPaths(request)), request.into, true);
  },
};
