#!/usr/bin/env node
// Regenerates config/config.example.yaml and docs/configuration.md's reference from the
// schema (test/config/config.test.ts checks both are current). Run: npm run gen:config
import { readFileSync, writeFileSync } from 'node:fs';
import { configReference, sampleConfig } from '../lib/config/sample.js';

const root = new URL('../../', import.meta.url);
writeFileSync(new URL('config/config.example.yaml', root), sampleConfig());
const reference = new URL('docs/configuration.md', root);
writeFileSync(reference, withReference(readFileSync(reference, 'utf8')));

export function withReference(text: string): string {
  const start = '<!-- config-reference:start -->';
  const end = '<!-- config-reference:end -->';
  const table = ['| key | default | meaning |', '| --- | --- | --- |', ...configReference()].join('\n');
  return text.replace(new RegExp(`${start}[\\s\\S]*?${end}`), `${start}\n${table}\n${end}`);
}
