#!/usr/bin/env node
// Writes config/example.yaml and docs/config-reference.md from the schema (run after `npm run build`).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exampleYaml, markdownReference } from '../dist/daemon/config/reference.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
fs.writeFileSync(path.join(root, 'config/example.yaml'), exampleYaml());
fs.writeFileSync(path.join(root, 'docs/config-reference.md'), markdownReference());
console.log('wrote config/example.yaml and docs/config-reference.md');
