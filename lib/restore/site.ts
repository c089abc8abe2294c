import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { LATEST } from '../dumps/layout.js';
import type { KindName } from '../model/kind.js';
import { restoreAcls } from '../engine/acl-restore.js';
import { sidecarFileName } from '../engine/acl-sidecar.js';
import { getEngine } from '../engine/index.js';
import type { EngineName } from '../engine/types.js';
import { BackupError, RestoreError, UsageError } from '../errors.js';
import { takeLock } from '../job/backup-job.js';
import { ALL_KINDS } from '../job/dump-step.js';
import type { Logger } from '../log.js';
import { openPanel } from '../panel/cpcmd.js';
import { SITE_ID } from '../model/site.js';
import { listSites } from '../panel/sites.js';
import { expandBackupPaths } from '../plan/paths.js';
import { copyEntries, removeEntries, restoreContexts, withSymlinksParked } from './apply.js';
import { accountsEntry, proofOfFailure, restoreDatabase, TargetServers, type DbRestoreResult } from './database.js';
import { recordRestore } from './journal.js';
import { restoreEngineContext } from './restore-db.js';
import { describeSource, resolveSource, sourceName, unlistedNewest } from './source.js';
import { pinDir } from './pinned.js';
import { fetchPaths, guessRunPaths, openStaging, stageDumps, stageRun } from './stage.js';
import { copyToTarget, countStaged } from './target.js';
import { diffTrees, display, fromUtf8, linkPartners, readXattrs, walkTree } from './tree.js';

/**
 * `restore site siteN` and `restore files siteN PATH…`: plan (which backup, which paths) →
 * fetch the site's shadow and info (or just PATHs) into staging → compare with the live site
 * (through `fst` when it is mounted, the merged view the site sees; else `shadow`) → apply with
 * --in-place (missing and changed entries back; with --exact, what the backup lacks removed).
 */
export interface SiteRestoreInput {
  readonly loaded: LoadedConfig;
  readonly log: Logger;
  readonly signal?: AbortSignal;
  readonly engine: EngineName;
  readonly site: string;
  readonly from?: string;
  readonly fromClient?: string;
  /** `restore files`: only these paths, as the site sees them (/var/www/html/x). */
  readonly paths?: readonly string[];
  readonly files: boolean;
  readonly databases: boolean;
  readonly inPlace: boolean;
  readonly exact: boolean;
  readonly dryRun: boolean;
  readonly target?: string;
  /** --accounts backup|keep for its database restores (see DbRestoreOptions). */
  readonly accounts?: 'keep' | 'backup';
  /** --grants: refused (it copies grants to an --into name; a site's databases keep their names). */
  readonly grants?: boolean;
  /** Each step as it begins: the terminal's progress display. */
  readonly onStep?: (text: string) => void;
  /** The engine's own progress while it fetches, where the tool gives one (EngineContext.onProgress): the same display. */
  readonly onProgress?: (text: string) => void;
}

export interface PartPlan {
  readonly part: 'shadow' | 'info';
  /** Bytes of the files among missing and changed: what --in-place puts back. */
  readonly bytes: number;
  /** Where the files go: the site's fst (overlay mounted) or shadow/info itself. */
  readonly into: string;
  readonly viaOverlay: boolean;
  /** Paths relative to `into`, readable (a name that is not UTF-8 shows U+FFFD here; the restore uses its bytes). */
  readonly missing: string[];
  readonly changed: string[];
  readonly removed: string[];
}

/** The same lists as raw relative paths (tree.ts): what the restore works with. */
interface RawPlan {
  readonly missing: string[];
  readonly changed: string[];
  readonly removed: string[];
  /** Unchanged files hard-linked to a missing or changed one: handed to rsync too, to be linked again. */
  readonly links: string[];
}

export interface SiteRestoreOutcome {
  readonly site: string;
  readonly source: string;
  readonly runId?: string;
  readonly parts: PartPlan[];
  readonly databases: { kind: string; database: string; before?: string; result?: DbRestoreResult }[];
  readonly applied: boolean;
  readonly target?: string;
  /** --target: the entries copied into it and the bytes of their files. */
  readonly copied?: { readonly entries: number; readonly bytes: number };
  /** The backup by its name only (`restic snapshot 1a2b3c4d`): the closing line. */
  readonly sourceName?: string;
  readonly selinux: boolean;
}

/** The mount point of `dir` from /proc/self/mountinfo, if it is an overlay mount. */
export function overlayMountedAt(dir: string): boolean {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => {
        const f = l.split(' ');
        const sep = f.indexOf('-');
        return f[4]?.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))) === dir && f[sep + 1] === 'overlay';
      });
  } catch {
    return false;
  }
}

async function siteKnown(input: SiteRestoreInput): Promise<boolean> {
  const panel = openPanel(input.loaded.config, { log: input.log, signal: input.signal });
  if (panel) return (await listSites(panel, { log: input.log, signal: input.signal })).has(input.site);
  return existsSync(join(input.loaded.paths.home, input.site));
}

/** A site-relative path (/var/www/html/x) as a safe relative path inside shadow. */
function sitePath(p: string): string {
  const rel = p.replace(/^\/+/, '').replace(/\/+$/, '');
  if (rel === '' || rel.split('/').some((s) => s === '..' || s === '.')) throw new UsageError(`${JSON.stringify(p)}: give a path inside the site, like /var/www/html/index.html`);
  return rel;
}

export async function restoreSite(input: SiteRestoreInput): Promise<SiteRestoreOutcome> {
  const { loaded, log, signal, site } = input;
  if (!SITE_ID.test(site)) throw new UsageError(`${JSON.stringify(site)} is not a site id (siteN)`);
  if (input.inPlace && input.target) throw new UsageError('--in-place and --target exclude each other');
  if (input.grants) throw new UsageError('--grants copies the accounts\' grants to a database restored --into a new name; restore site restores each database under its own name (restore db NAME --into NEW --grants for a copy)');
  if (input.accounts === 'backup' && !input.inPlace) throw new UsageError('--accounts backup changes accounts when the databases are put back: it needs --in-place');
  const engine = getEngine(input.engine);
  const ctx = { ...restoreEngineContext(loaded, log, signal), ...(input.onProgress ? { onProgress: input.onProgress } : {}) };
  const command = input.paths ? 'restore files' : 'restore site';
  const known = await siteKnown(input);
  if (!known && !input.target) throw new UsageError(`unknown site ${site}: the panel has no such site (restore it elsewhere with --target DIR)`);
  if (input.files && !engine.fetch) throw new RestoreError(`engine ${engine.name} backs up no files: restore them with the software that copies them (--databases restores the databases from the local runs)`);
  const home = join(loaded.paths.home, site);
  const lock = await takeLock(input, `apiscp-backup ${command} ${site}`);
  const staging = await openStaging(loaded);
  let from: string | undefined;
  let name: string | undefined;
  let runId: string | undefined;
  const done: string[] = [];
  try {
    input.onStep?.('finding the backup');
    // The files of the newest backup: restic picks it as it extracts (source.ts unlistedNewest).
    // Its step says "fetching" once restic has named the snapshot: until then it is still finding it.
    const newest = input.files && input.from === undefined ? unlistedNewest(engine, input.fromClient, () => fetching()) : undefined;
    const source = newest?.source ?? (await resolveSource(loaded, engine, ctx, { from: input.from, allowLocal: !input.files, client: input.fromClient }));
    const fetcher = newest?.engine ?? engine;
    const fetching = (): void => input.onStep?.(`fetching ${site}'s ${input.files ? 'files' : 'dumps'} from ${sourceName(source)}`);
    from = describeSource(source);
    name = sourceName(source);
    const parts: ('shadow' | 'info')[] = input.paths ? ['shadow'] : ['shadow', 'info'];
    const wanted = input.paths ? input.paths.map((p) => join(home, 'shadow', sitePath(p))) : parts.map((p) => join(home, p));
    const sidecar = input.files && !engine.keepsAcls ? [join(loaded.paths.dumpsDir, sidecarFileName())] : [];
    if (source.type === 'engine' && (input.files || input.databases)) {
      // One extraction: the files, duplicity's ACL sidecar, `latest`, and what the run it most
      // likely points at holds for this site (stageRun and stageDumps fetch only what a wrong guess missed).
      const latest = input.databases ? [join(loaded.paths.dumpsDir, LATEST)] : [];
      const guessed = input.databases && !input.paths ? await guessRunPaths(loaded, source.point, site, staging) : [];
      if (!newest) fetching();
      try {
        await fetchPaths(fetcher, ctx, source, staging, [...(input.files ? wanted : []), ...sidecar, ...latest], guessed);
      } finally {
        [from, name] = [describeSource(source), sourceName(source)]; // named now, when restic picked it
      }
    }
    // Every symlink of the site's staged directory, not only of `wanted`: a merged duplicity run may have brought more of it.
    if (sidecar[0]) await withSymlinksParked([staging.dir + home], join(staging.dir, 'parked'), () => restoreAcls(staging.dir, staging.dir + sidecar[0]));
    const run = input.databases ? await stageRun(loaded, fetcher, ctx, source, source.type === 'engine' ? staging : undefined, input.paths ? undefined : site) : undefined;
    runId = run?.runId;
    const dbEntries = run ? run.manifest.entries.filter((e) => e.object === 'database' && e.status === 'ok' && e.site === site && e.path) : [];
    if (run && dbEntries.length) {
      const kinds = [...new Set(dbEntries.map((e) => e.kind as KindName))];
      const accounts = kinds.map((k) => accountsEntry(run, k)).filter((e) => e !== undefined);
      const dumps = `${dbEntries.length} database dump(s) of ${site}`;
      if (source.type === 'engine') input.onStep?.(`fetching ${dumps} from ${name}`);
      await stageDumps(loaded, fetcher, ctx, source, source.type === 'engine' ? staging : undefined, run, [...dbEntries, ...accounts], () => input.onStep?.(`checking ${dumps} (sha256)`));
    }

    if (input.target) {
      // A site the panel no longer has, or a copy to look at: files (and dumps) into DIR only.
      const dest = join(input.target, site);
      input.onStep?.(`copying into ${dest}`);
      const copied = countStaged(input.files ? wanted.map((w) => staging.dir + w) : []);
      await copyToTarget({ target: input.target, site, home, wanted: input.files ? wanted : [], run, dumps: dbEntries, staging: staging.dir, signal });
      const outcome: SiteRestoreOutcome = { site, source: from, sourceName: name, runId, parts: [], databases: dbEntries.map((e) => ({ kind: e.kind, database: e.database! })), applied: false, target: dest, copied, selinux: false };
      recordRestore(loaded, log, { command, what: `${site} → ${dest}`, from, runId, result: 'ok' });
      return outcome;
    }

    // Compare.
    if (input.files) input.onStep?.(`comparing ${site}'s files with the backup`);
    const { plans, raws } = input.files ? await compareParts(input, home, parts, staging.dir) : { plans: [] as PartPlan[], raws: new Map<PartPlan, RawPlan>() };
    const databases: SiteRestoreOutcome['databases'] = dbEntries.map((e) => ({ kind: e.kind, database: e.database! }));
    if (input.inPlace && input.dryRun && run && dbEntries.length) {
      // The account plan of each database restore, and the drift found now: nothing changes.
      const servers = new TargetServers(ALL_KINDS, { loaded, log, signal });
      try {
        for (const [i, e] of dbEntries.entries()) databases[i] = { ...databases[i]!, result: await restoreDatabase(loaded, log, servers, run, e, { force: true, dryRun: true, accounts: input.accounts }, signal) };
      } finally {
        await servers.close();
      }
    }
    if (!input.inPlace || input.dryRun) {
      recordRestore(loaded, log, { command, what: site, from, runId, result: 'dry-run', changes: counts(plans) });
      return { site, source: from, sourceName: name, runId, parts: plans, databases, applied: false, selinux: false };
    }

    // Apply: removals first (a file that became a directory), then missing and changed entries.
    const { selinux, leftAlone } = await applyParts(input, plans, raws, staging.dir, done);
    const results: SiteRestoreOutcome['databases'] = [];
    if (run && dbEntries.length) {
      const servers = new TargetServers(ALL_KINDS, { loaded, log, signal });
      try {
        for (const e of dbEntries) {
          // --in-place on a site is the admin's "put it back": databases are replaced, after a safety dump.
          const result = await restoreDatabase(loaded, log, servers, run, e, { force: true, dryRun: false, accounts: input.accounts, onStep: input.onStep }, signal);
          results.push({ kind: e.kind, database: e.database!, before: result.before, result });
          done.push(`${e.kind} '${e.database}' restored`);
        }
      } finally {
        await servers.close();
      }
    }
    if (leftAlone.length) {
      // Only a race does this: a directory on the way swapped for a symlink while we removed. Nothing was followed.
      throw new RestoreError(`${leftAlone.length} entr${leftAlone.length === 1 ? 'y' : 'ies'} changed while they were removed and were left alone (no symlink was followed): ${leftAlone.slice(0, 5).map((l) => JSON.stringify(l)).join(', ')}${leftAlone.length > 5 ? ', …' : ''}`, { leftAlone });
    }
    const outcome: SiteRestoreOutcome = { site, source: from, sourceName: name, runId, parts: plans, databases: results, applied: true, selinux };
    recordRestore(loaded, log, {
      command,
      what: site,
      from,
      runId,
      result: 'ok',
      changes: counts(plans),
      safetyDumps: results.map((r) => r.result?.safetyDump).filter((x): x is string => Boolean(x)),
      accountsCreated: results.flatMap((r) => r.result?.accountsCreated ?? []),
      comparisons: Object.fromEntries(results.flatMap((r) => (r.result?.proof ? [[`${r.kind}:${r.database}`, r.result.proof]] : []))),
    });
    return outcome;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    const detail = done.length ? `${why}; done before the failure: ${done.join(', ')}; everything after it was NOT put back` : why;
    const proof = proofOfFailure(err);
    recordRestore(loaded, log, { command, what: site, from, runId, result: 'failed', detail, ...(proof ? { comparisons: proof } : {}) });
    if (done.length && err instanceof BackupError) throw new RestoreError(`${command} ${site} failed: ${detail}`, err.context, { cause: err });
    throw err;
  } finally {
    await staging.dispose();
    await lock.release();
  }
}

/**
 * Each part (shadow, info) of the staged backup against the live site: through `fst` when it is
 * mounted (the merged view the site sees), else the part itself. What the backup leaves out
 * (paths.exclude: shadow/var/lib's raw database files) is never compared, never removed.
 */
async function compareParts(input: SiteRestoreInput, home: string, parts: readonly ('shadow' | 'info')[], stagingDir: string): Promise<{ plans: PartPlan[]; raws: Map<PartPlan, RawPlan> }> {
  const { excludes } = await expandBackupPaths(input.loaded.paths);
  const plans: PartPlan[] = [];
  const raws = new Map<PartPlan, RawPlan>();
  for (const part of parts) {
    const fst = join(home, 'fst');
    const viaOverlay = part === 'shadow' && overlayMountedAt(fst);
    const upper = join(home, part);
    const into = viaOverlay ? fst : upper;
    const scope = input.paths ? input.paths.map(sitePath) : [''];
    const rawExcludes = excludes.map(fromUtf8);
    const rawUpper = fromUtf8(upper);
    const skip = (rel: string): boolean => rawExcludes.some((x) => `${rawUpper}/${rel}` === x || `${rawUpper}/${rel}`.startsWith(x + '/'));
    const plan: RawPlan = { missing: [], changed: [], removed: [], links: [] };
    let bytes = 0;
    for (const top of scope) {
      const backupDir = join(stagingDir + upper, top);
      const liveDir = join(into, top);
      const rawTop = fromUtf8(top);
      const prefix = (r: string): string => (rawTop ? (r ? `${rawTop}/${r}` : rawTop) : r);
      const scopedSkip = (r: string): boolean => skip(prefix(r));
      const ignore = (n: string): boolean => n === 'security.selinux' || (viaOverlay && n.startsWith('trusted.overlay.'));
      const [backup, live, liveUpper, bx, lx] = await Promise.all([
        walkTree(backupDir, scopedSkip),
        walkTree(liveDir, scopedSkip),
        viaOverlay ? walkTree(join(upper, top), scopedSkip) : Promise.resolve(undefined),
        readXattrs(backupDir, ignore, stagingDir),
        existsSync(liveDir) ? readXattrs(liveDir, ignore, stagingDir) : Promise.resolve(new Map<string, string>()),
      ]);
      const d = await diffTrees({ backupDir, backup, backupXattrs: bx, liveDir, live, liveXattrs: lx, viaOverlay, liveUpper, includeRoot: top !== '' });
      for (const rel of [...d.missing, ...d.changed]) {
        const e = backup.get(rel);
        if (e?.type === 'file') bytes += e.size;
      }
      plan.missing.push(...d.missing.map(prefix));
      plan.changed.push(...d.changed.map(prefix));
      plan.links.push(...linkPartners(backup, new Set([...d.missing, ...d.changed])).map(prefix));
      // A whiteout in the backup, a file in the merged view: it goes (through fst).
      plan.removed.push(...d.whiteouts.map(prefix), ...(input.exact ? d.extra.map(prefix) : []));
    }
    const shown: PartPlan = { part, into, viaOverlay, bytes, missing: plan.missing.map(display), changed: plan.changed.map(display), removed: plan.removed.map(display) };
    plans.push(shown);
    raws.set(shown, plan);
  }
  return { plans, raws };
}

/**
 * Removals first (a file that became a directory), then the missing and changed entries, part by
 * part. The part's directory is held open (pinned.ts) and everything below it is reached from
 * that handle: removals without following a symlink, rsync and restorecon in the jail
 * (confine.ts). `done` gets a line per step, for the message of a failure after it.
 */
async function applyParts(input: SiteRestoreInput, plans: readonly PartPlan[], raws: ReadonlyMap<PartPlan, RawPlan>, stagingDir: string, done: string[]): Promise<{ selinux: boolean; leftAlone: string[] }> {
  const home = join(input.loaded.paths.home, input.site);
  let selinux = false;
  const leftAlone: string[] = [];
  for (const plan of plans) {
    const r = raws.get(plan)!;
    const backupRoot = stagingDir + join(home, plan.part);
    const live = await pinDir(plan.into, { what: `${input.site}'s ${plan.part}` });
    try {
      const jail = { base: stagingDir, live, at: plan.into, readOnly: stagingDir };
      if (r.removed.length) input.onStep?.(`removing ${r.removed.length} entr${r.removed.length === 1 ? 'y' : 'ies'} of ${plan.part}`);
      const left = await removeEntries(live, r.removed);
      leftAlone.push(...left.map((l) => `${plan.part}/${l}`));
      done.push(`${plan.part}: ${r.removed.length - left.length} removed`);
      const back = [...r.missing, ...r.changed].sort();
      if (back.length) input.onStep?.(`putting back ${back.length} entr${back.length === 1 ? 'y' : 'ies'} of ${plan.part}`);
      await copyEntries(backupRoot, plan.into, [...back, ...r.links].sort(), { viaOverlay: plan.viaOverlay, scratch: stagingDir, signal: input.signal, jail });
      done.push(`${plan.part}: ${back.length} put back`);
      if (await restoreContexts(jail, back, stagingDir)) selinux = true;
    } finally {
      await live.close();
    }
  }
  return { selinux, leftAlone };
}

function counts(plans: readonly PartPlan[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const p of plans) {
    c[`${p.part}.missing`] = p.missing.length;
    c[`${p.part}.changed`] = p.changed.length;
    c[`${p.part}.removed`] = p.removed.length;
  }
  return c;
}
