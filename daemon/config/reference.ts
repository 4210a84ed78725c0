import YAML from 'yaml';
import { envName, isOption, listOptions, schema, type SchemaTree } from './schema.js';

/**
 * The commented example config and the Markdown reference, both generated from the schema
 * so they cannot drift from it (a test compares them with the committed files).
 */

function wrap(text: string, width: number, indent: string): string[] {
  const words = text.split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && (line.length + 1 + w.length) > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.map((l) => `${indent}# ${l}`);
}

function yamlValue(v: unknown): string {
  return YAML.stringify(v, { flowCollectionPadding: false, collectionStyle: 'flow', lineWidth: 0 }).trim();
}

export function exampleYaml(): string {
  const out = [
    '# mailsync configuration. Every option is shown with its default; delete what you do not',
    '# change. Each can also be set by an environment variable (named on its line), which wins',
    '# over this file. Check a file with: npx mailsync config check --config <file>',
    '',
  ];
  const walk = (tree: SchemaTree, path: string[], depth: number) => {
    for (const [key, node] of Object.entries(tree)) {
      const indent = '  '.repeat(depth);
      const p = [...path, key];
      if (isOption(node)) {
        out.push(...wrap(node.doc, 92 - indent.length, indent));
        out.push(`${indent}# env: ${envName(p)}${node.sensitive ? ' (secret: never logged or printed)' : ''}`);
        out.push(`${indent}${key}: ${yamlValue(node.default)}`);
      } else {
        if (depth === 0) out.push('');
        out.push(`${indent}${key}:`);
        walk(node as SchemaTree, p, depth + 1);
      }
    }
  };
  walk(schema, [], 0);
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

export function markdownReference(): string {
  const rows = listOptions().map(({ path, spec }) => {
    const def = `\`${JSON.stringify(spec.default)}\`${spec.sensitive && spec.default !== '' ? ' (a placeholder: set your own)' : ''}`;
    return `| \`${path.join('.')}\` | \`${envName(path)}\` | ${def} | ${spec.doc.replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Configuration reference',
    '',
    'Generated from the schema in `daemon/config/schema.ts` by `npm run gen:config`; a test fails when this file is stale.',
    'Options come from the file given with `--config` (YAML or JSON), then environment variables, then these defaults.',
    'Unknown keys and bad values are errors that name the key.',
    '',
    '| option | environment variable | default | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
