#!/usr/bin/env node
// `npm run bench [-- scenario ...] [--quick]`: runs the benchmark scenarios in
// scripts/bench/<name>.mjs, prints one table of the product's figures against the floor
// measured in the same run, and writes bench/results.json. It builds nothing: run
// `npm run build` first.
//
// A scenario module exports `name`, `describe` (one line) and
// `default async function run({ quick, log })` returning `{ rows, extra }`, where each row is
// `{ metric, product, floor, unit, ratio, target, pass }` (floor and ratio may be null).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const benchDir = path.join(root, 'scripts/bench');
/** Scenarios run in this order; any other scenario module found runs after them. */
const ORDER = ['push-latency', 'initial-sync', 'capacity', 'webhooks', 'api', 'storage', 'relay'];

const { values, positionals } = parseArgs({ allowPositionals: true, options: { quick: { type: 'boolean' }, list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });

async function discover() {
  const found = [];
  for (const file of fs.readdirSync(benchDir).filter((f) => f.endsWith('.mjs')).sort()) {
    const mod = await import(pathToFileURL(path.join(benchDir, file)).href);
    // helper modules (the mailbox generator) live here too: a scenario has all three exports
    if (typeof mod.name === 'string' && typeof mod.describe === 'string' && typeof mod.default === 'function') found.push(mod);
  }
  const rank = (n) => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
  return found.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
}

const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

function fmt(v, unit) {
  if (v === null || v === undefined) return '-';
  if (typeof v !== 'number') return String(v);
  const n = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${n} ${unit}` : n;
}

function table(results) {
  const head = ['scenario', 'metric', 'product', 'floor', 'ratio', 'target', 'result'];
  const lines = [];
  for (const [scenario, r] of Object.entries(results)) {
    for (const row of r.rows) {
      lines.push([scenario, row.metric, fmt(row.product, row.unit), fmt(row.floor, row.unit), row.ratio === null || row.ratio === undefined ? '-' : `${fmt(row.ratio)}×`, row.target ?? '-', row.pass === true ? 'PASS' : row.pass === false ? 'MISS' : '-']);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(line)].join('\n');
}

async function main() {
  const scenarios = await discover();
  if (values.help || values.list) {
    process.stdout.write(`usage: npm run bench [-- scenario ...] [--quick]\n\nscenarios:\n${scenarios.map((s) => `  ${s.name.padEnd(14)} ${s.describe}`).join('\n')}\n`);
    return 0;
  }
  if (!fs.existsSync(path.join(root, 'dist/daemon/daemon.js'))) {
    process.stderr.write('bench: dist/ is missing: run `npm run build` first (the benchmarks measure the built daemon)\n');
    return 2;
  }
  const unknown = positionals.filter((p) => !scenarios.some((s) => s.name === p));
  if (unknown.length) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')}; known: ${scenarios.map((s) => s.name).join(', ')}\n`);
    return 2;
  }
  const chosen = positionals.length ? scenarios.filter((s) => positionals.includes(s.name)) : scenarios;
  const startedAt = new Date().toISOString();
  const results = {};
  let failed = 0;
  for (const s of chosen) {
    log(`${s.name}: ${s.describe}${values.quick ? ' (quick)' : ''}`);
    const t0 = Date.now();
    try {
      const { rows, extra } = await s.default({ quick: !!values.quick, log: (m) => log(`${s.name}: ${m}`) });
      results[s.name] = { rows, extra: extra ?? null, seconds: Math.round((Date.now() - t0) / 100) / 10 };
    } catch (err) {
      failed++;
      log(`${s.name}: FAILED: ${err.stack ?? err.message}`);
      results[s.name] = { rows: [{ metric: 'scenario failed', product: null, floor: null, unit: '', ratio: null, target: String(err.message).slice(0, 80), pass: false }], extra: { error: String(err.stack ?? err.message) }, seconds: Math.round((Date.now() - t0) / 100) / 10 };
    }
    log(`${s.name}: done in ${results[s.name].seconds} s`);
  }
  const machine = {
    cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? null, memoryBytes: os.totalmem(), node: process.version,
    platform: `${os.platform()} ${os.release()}`, loadAverageAtStart: os.loadavg(),
  };
  const out = { machine, startedAt, finishedAt: new Date().toISOString(), quick: !!values.quick, scenarios: results };
  fs.mkdirSync(path.join(root, 'bench'), { recursive: true });
  fs.writeFileSync(path.join(root, 'bench/results.json'), `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`\n${table(results)}\n\nwritten: bench/results.json${values.quick ? ' (quick run: small sizes, not comparable with a full run)' : ''}\n`);
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
