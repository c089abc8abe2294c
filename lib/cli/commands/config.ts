import { existsSync } from 'node:fs';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../../atomic-file.js';
import { configFileFor, loadConfig } from '../../config/load.js';
import { sampleConfig } from '../../config/sample.js';
import { redactConfig } from '../../config/redact.js';
import { UsageError } from '../../errors.js';
import { checkSecretFiles } from '../../engine/secret-checks.js';
import type { CommandContext } from '../context.js';

export async function validate(ctx: CommandContext, _opts: Record<string, unknown>, args: string[]): Promise<number> {
  // The context already loaded --config/$APISCP_BACKUP_CONFIG; an explicit argument is checked here.
  const loaded = args[0] ? loadConfig({ file: args[0], root: ctx.options.root }) : ctx.loaded;
  checkSecretFiles(loaded);
  if (!ctx.interactive && !ctx.options.json) return 0;
  ctx.out(ctx.options.json ? JSON.stringify({ valid: true, file: loaded.file ?? null }) : `${loaded.file ?? 'defaults (no file)'}: valid`);
  return 0;
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
