#!/usr/bin/env node
// Regenerates config/config.example.yaml and the configuration reference (docs/configuration.md, and the README's) from the
// schema (test/config.test.ts checks both are current). Run: npm run gen:config
import { readFileSync, writeFileSync } from 'node:fs';
import { configReference, sampleConfig } from '../lib/config/sample.js';

const root = new URL('../../', import.meta.url);
writeFileSync(new URL('config/config.example.yaml', root), sampleConfig());
// docs/configuration.md holds the reference; the README keeps its copy while it has the markers.
for (const file of ['docs/configuration.md', 'README.md']) {
  const url = new URL(file, root);
  writeFileSync(url, withReference(readFileSync(url, 'utf8')));
}

export function withReference(text: string): string {
  const start = '<!-- config-reference:start -->';
  const end = '<!-- config-reference:end -->';
  const table = ['| key | default | meaning |', '| --- | --- | --- |', ...configReference()].join('\n');
  return text.replace(new RegExp(`${start}[\\s\\S]*?${end}`), `${start}\n${table}\n${end}`);
}
