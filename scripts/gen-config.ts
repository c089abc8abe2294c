#!/usr/bin/env node
// Regenerates config/config.example.yaml from the schema (test/config.test.ts checks it is current).
import { writeFileSync } from 'node:fs';
import { sampleConfig } from '../lib/config/sample.js';

writeFileSync(new URL('../../config/config.example.yaml', import.meta.url), sampleConfig());
