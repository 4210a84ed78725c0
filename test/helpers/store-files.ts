import fs from 'node:fs';
import path from 'node:path';

/**
 * Searches every file of a LevelDB directory (table files, the write-ahead .log, MANIFEST…) for
 * secret bytes. LevelDB compresses table blocks with Snappy, which can split a long value where
 * a few bytes repeat earlier in the block, so a needle counts as present when any 16-byte window
 * of it (every 8 bytes) is found: random secrets are never split at every window, and a
 * 16-byte window of random text occurs nowhere else by chance.
 */
export function findInStoreFiles(dir: string, needles: Record<string, Buffer | string>): Record<string, string[]> {
  const files = fs.readdirSync(dir).filter((f) => fs.statSync(path.join(dir, f)).isFile());
  const contents = files.map((f) => [f, fs.readFileSync(path.join(dir, f))] as const);
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(needles)) {
    const needle = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
    const windows: Buffer[] = [];
    if (needle.length <= 16) windows.push(needle);
    else for (let i = 0; i + 16 <= needle.length; i += 8) windows.push(needle.subarray(i, i + 16));
    out[name] = contents.filter(([, data]) => windows.some((w) => data.includes(w))).map(([f]) => f);
  }
  return out;
}

/** The files that hold any of the needles, as `name: file, file` lines (empty when none). */
export function foundAnywhere(found: Record<string, string[]>): string[] {
  return Object.entries(found).filter(([, files]) => files.length).map(([name, files]) => `${name}: ${files.join(', ')}`);
}

/** A-Z to a-z, byte by byte (UTF-8 sequences of other letters are left as they are). */
function asciiLower(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  for (let i = 0; i < out.length; i++) if (out[i]! >= 0x41 && out[i]! <= 0x5a) out[i]! += 0x20;
  return out;
}

/**
 * Like `findInStoreFiles`, in any letter case: each text is looked for as given, in lower and in
 * upper case (as UTF-8), and the files and needles are compared with ASCII letters folded. A
 * file that LevelDB deletes while it is read is skipped (it is gone).
 */
export function findAnyCaseInStoreFiles(dir: string, needles: Record<string, string>): Record<string, string[]> {
  const contents: Array<readonly [string, Buffer]> = [];
  for (const f of fs.readdirSync(dir)) {
    try {
      contents.push([f, asciiLower(fs.readFileSync(path.join(dir, f)))]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EISDIR') throw err;
    }
  }
  const out: Record<string, string[]> = {};
  for (const [name, text] of Object.entries(needles)) {
    const windows: Buffer[] = [];
    for (const form of new Set([text, text.toLowerCase(), text.toUpperCase()])) {
      const needle = asciiLower(Buffer.from(form, 'utf8'));
      if (needle.length <= 16) windows.push(needle);
      else for (let i = 0; i + 16 <= needle.length; i += 8) windows.push(needle.subarray(i, i + 16));
    }
    out[name] = contents.filter(([, data]) => windows.some((w) => data.includes(w))).map(([f]) => f);
  }
  return out;
}
