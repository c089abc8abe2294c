import { stringify } from 'yaml';
import { z } from 'zod';
import { configSchema } from './schema.js';

interface Unwrapped {
  schema: z.ZodTypeAny;
  description?: string;
  defaultValue?: unknown;
  optional: boolean;
}

function unwrap(schema: z.ZodTypeAny): Unwrapped {
  let s = schema;
  let description = s.description;
  let defaultValue: unknown;
  let optional = false;
  for (;;) {
    if (s instanceof z.ZodDefault) {
      defaultValue = (s._def as { defaultValue: () => unknown }).defaultValue();
      s = s._def.innerType;
    } else if (s instanceof z.ZodOptional) {
      optional = true;
      s = s._def.innerType;
    } else break;
    description ??= s.description;
  }
  return { schema: s, description, defaultValue, optional };
}

/**
 * The commented default config (`config init`, config/config.example.yaml), generated from the
 * schema so documentation and validation cannot drift apart.
 */
export function sampleConfig(): string {
  const lines = [
    '# apiscp-backup configuration (/etc/apiscp-backup/config.yaml).',
    '# Every key is optional: the values shown are the defaults. Unknown keys are errors.',
    '# Reference: docs/configuration.md. Check a file with: apiscp-backup config validate FILE',
    '',
  ];
  walk(configSchema, 0, lines);
  return lines.join('\n') + '\n';
}

function walk(object: z.AnyZodObject, depth: number, lines: string[]): void {
  const pad = '  '.repeat(depth);
  for (const [key, child] of Object.entries(object.shape as Record<string, z.ZodTypeAny>)) {
    const u = unwrap(child);
    if (u.description && u.description !== 'duration') lines.push(`${pad}# ${u.description}`);
    if (u.schema instanceof z.ZodObject) {
      lines.push(`${pad}${key}:`);
      walk(u.schema, depth + 1, lines);
      if (depth === 0) lines.push('');
      continue;
    }
    if (u.defaultValue === undefined) {
      lines.push(`${pad}# ${key}:`);
      continue;
    }
    const value = stringify({ [key]: u.defaultValue }, { lineWidth: 0 }).trimEnd().split('\n');
    lines.push(...value.map((l) => pad + l));
  }
}

/** Reference table for docs/configuration.md: key, default, description. */
export function configReference(): string[] {
  const rows: string[] = [];
  const visit = (object: z.AnyZodObject, prefix: string): void => {
    for (const [key, child] of Object.entries(object.shape as Record<string, z.ZodTypeAny>)) {
      const u = unwrap(child);
      if (u.schema instanceof z.ZodObject) visit(u.schema, `${prefix}${key}.`);
      else rows.push(`| \`${prefix}${key}\` | ${u.defaultValue === undefined ? '—' : `\`${JSON.stringify(u.defaultValue)}\``} | ${u.description && u.description !== 'duration' ? u.description : ''} |`);
    }
  };
  visit(configSchema, '');
  return rows;
}
