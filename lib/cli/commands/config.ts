import { existsSync } from 'node:fs';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../../atomic-file.js';
import { checkConfig, formatProblems } from '../../config/checks.js';
import { configFileFor, loadConfig, type LoadedConfig } from '../../config/load.js';
import { sampleConfig } from '../../config/sample.js';
import { redactConfig } from '../../config/redact.js';
import { BackupError, UsageError } from '../../errors.js';
import { ExitCode } from '../../exit-codes.js';
import { probeEngine, viewPlan } from '../plan-view.js';
import type { CommandContext } from '../context.js';

/**
 * `config validate [FILE] [--connect]`: the syntax, then what a run will need (lib/config/checks.ts),
 * every problem at once; --connect also reaches each database server and the engine's repository.
 */
export async function validate(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  // The context already loaded --config/$APISCP_BACKUP_CONFIG; an explicit argument is checked here.
  const loaded = args[0] ? loadConfig({ file: args[0], root: ctx.options.root }) : ctx.loaded;
  const problems = formatProblems(loaded, checkConfig(loaded));
  const found = opts.connect ? await connect(ctx, loaded) : undefined;
  const unreachable = found?.filter((f) => !f.ok) ?? [];
  const name = loaded.file ?? 'defaults (no file)';
  if (ctx.options.json) {
    ctx.out(JSON.stringify({ valid: problems.length === 0, file: loaded.file ?? null, ...(problems.length ? { problems } : {}), ...(found ? { connect: found } : {}) }));
  } else if (problems.length) {
    process.stderr.write(`${name}: ${problems.length} problem(s) a run would meet:\n${problems.map((p) => `  ${p}\n`).join('')}`);
  }
  if (!ctx.options.json && found) ctx.out(found.map((f) => `${f.ok ? 'ok' : 'FAILED'}  ${f.text}`).join('\n'));
  if (problems.length) return ExitCode.USAGE;
  if (unreachable.length) return unreachable[0]!.exitCode;
  if (!ctx.options.json && (ctx.interactive || found)) ctx.out(`${name}: valid${found ? '' : ' (config validate --connect also reaches the servers and the repository)'}`);
  return 0;
}

interface Reached {
  readonly what: string;
  readonly ok: boolean;
  readonly text: string;
  readonly exitCode: number;
}

/** Each enabled database server (version, databases) and the engine's repository (backups). */
async function connect(ctx: CommandContext, loaded: LoadedConfig): Promise<Reached[]> {
  const out: Reached[] = [];
  const view = await viewPlan(loaded, ctx.log, ctx.signal, { sites: false }).catch((err: unknown) => {
    if (!(err instanceof BackupError)) throw err;
    out.push({ what: 'databases', ok: false, text: `databases: ${err.message}`, exitCode: err.exitCode });
    return undefined;
  });
  if (view) {
    for (const s of view.servers) {
      const dumped = view.rows.filter((r) => r.kind === s.kind && r.object === 'database').length;
      out.push(
        s.reached
          ? { what: s.kind, ok: true, text: `${s.kind}: server ${s.version ?? '?'}, ${view.listed[s.kind] ?? 0} database(s) besides the system ones, ${dumped} of them dumped (include/exclude)`, exitCode: 0 }
          : { what: s.kind, ok: false, text: `${s.kind}: not reached (${s.expected}): ${s.error ?? 'no answer'}`, exitCode: ExitCode.DUMP_FAILED },
      );
    }
    if (view.servers.length === 0) out.push({ what: 'databases', ok: true, text: 'no database server enabled or installed: nothing to dump', exitCode: 0 });
  }
  const engine = await probeEngine(loaded, ctx.log, ctx.signal, loaded.config.engine);
  out.push({ what: 'engine', ok: engine.ok, text: engine.text, exitCode: engine.ok ? 0 : ExitCode.ENGINE });
  return out;
}

export async function print(ctx: CommandContext): Promise<number> {
  const shown = redactConfig(ctx.loaded.config);
  ctx.out(ctx.options.json ? JSON.stringify(shown, null, 2) : `# effective configuration${ctx.loaded.file ? ` (${ctx.loaded.file})` : ' (defaults)'}\n${stringify(shown)}`);
  return 0;
}

export async function init(ctx: CommandContext, opts: Record<string, unknown>, args: string[]): Promise<number> {
  const file = args[0] ?? configFileFor({ file: ctx.options.config, root: ctx.options.root }).file;
  if (existsSync(file) && !opts.force) throw new UsageError(`${file} exists; use --force to overwrite it`);
  writeFileAtomic(file, sampleConfig(), { mode: 0o600, dirMode: 0o755 });
  ctx.out(`wrote ${file}`);
  return 0;
}
