import fs from 'node:fs';
import path from 'node:path';

/**
 * Finds secrets in log files: each secret as written, and as it would look base64-encoded
 * inside something longer (SASL PLAIN and XOAUTH2 strings, Basic auth) or percent-encoded
 * (a form body, a URL). A finding names the file, the line and the kind of secret — never the
 * secret, so the report itself leaks nothing.
 */

export interface Secret {
  /** What it is, for the report: "password", "oauth access token", "message body marker"… */
  kind: string;
  value: string;
}

export interface Leak {
  file: string;
  line: number;
  kind: string;
  encoding: 'as written' | 'base64' | 'percent-encoded' | 'JSON-escaped';
}

/** Shorter values are not looked for: they occur in innocent text ("pw", "x"). */
export const MIN_SECRET_LENGTH = 8;

interface Needle {
  text: string;
  kind: string;
  encoding: Leak['encoding'];
}

/**
 * The parts of base64 output that depend only on the secret, for each of the three ways it
 * can be aligned inside a longer encoded string.
 */
export function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const cores: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset, 0), bytes]).toString('base64');
    // groups of 3 input bytes → 4 characters; the first group mixes in the prefix when offset > 0,
    // the last one whatever follows the secret
    const start = offset ? 4 : 0;
    const end = Math.floor((offset + bytes.length) / 3) * 4;
    const core = encoded.slice(start, end);
    if (core.length >= 8) cores.push(core);
  }
  return cores;
}

function needlesOf(secrets: readonly Secret[]): Needle[] {
  const out = new Map<string, Needle>();
  const add = (text: string, kind: string, encoding: Needle['encoding']) => {
    if (!out.has(text)) out.set(text, { text, kind, encoding });
  };
  for (const { kind, value } of secrets) {
    if (value.length < MIN_SECRET_LENGTH) continue;
    add(value, kind, 'as written');
    const json = JSON.stringify(value).slice(1, -1);
    if (json !== value) add(json, kind, 'JSON-escaped');
    const pct = encodeURIComponent(value);
    if (pct !== value) add(pct, kind, 'percent-encoded');
    for (const core of base64Cores(value)) add(core, kind, 'base64');
  }
  return [...out.values()];
}

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < index; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** Every needle found in `text`, once per kind and line. */
export function scanText(text: string, secrets: readonly Secret[], file = '<text>'): Leak[] {
  const leaks: Leak[] = [];
  const seen = new Set<string>();
  for (const n of needlesOf(secrets)) {
    for (let at = text.indexOf(n.text); at !== -1; at = text.indexOf(n.text, at + 1)) {
      const line = lineOf(text, at);
      const key = `${line}:${n.kind}`;
      if (seen.has(key)) continue;
      seen.add(key);
      leaks.push({ file, line, kind: n.kind, encoding: n.encoding });
    }
  }
  return leaks.sort((a, b) => a.line - b.line);
}

export interface ScanResult {
  files: number;
  bytes: number;
  lines: number;
  leaks: Leak[];
}

/** Scans every `*.log` file under `dir` (not recursive). */
export function scanLogDir(dir: string, secrets: readonly Secret[]): ScanResult {
  const result: ScanResult = { files: 0, bytes: 0, lines: 0, leaks: [] };
  if (!fs.existsSync(dir)) return result;
  for (const name of fs.readdirSync(dir).filter((f) => f.endsWith('.log')).sort()) {
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    result.files++;
    result.bytes += Buffer.byteLength(text);
    result.lines += text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    result.leaks.push(...scanText(text, secrets, name));
  }
  return result;
}

/** A report line per leak: where and what kind, never the value. */
export function describeLeaks(leaks: readonly Leak[]): string {
  return leaks.map((l) => `${l.file}:${l.line}: ${l.kind} (${l.encoding})`).join('\n');
}
