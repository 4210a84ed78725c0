import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseMessage } from '../../daemon/mail/parse.js';
import { headerValues, parseHeaderBlock } from '../../daemon/threads/headers.js';
import { extractIdHeaders, allNormalisedIds } from '../../daemon/threads/message-ids.js';
import { trackedComponents } from '../../daemon/threads/matching.js';

/**
 * Optional robustness run over the 2,400 real-world messages of the shared corpus
 * (`../shared/corpus/public`, read in place; skipped with a message when absent): every
 * message parses without a crash, and thread assembly — with every conversation treated as
 * ATS-originated — groups them as `public-threads.json` says.
 *
 * Two deliberate differences from the oracle, decided by rule rather than by file name:
 * a message with several Message-ID fields is found under each of them (B04; the oracle
 * keeps the first), and a Message-ID without angle brackets or "@" is not an id (B02: id-less
 * mail is never merged; the oracle takes the bare token). Messages with either are left out
 * of the comparison, and counted.
 */

t.setTimeout(300_000);

const root = path.resolve(fileURLToPath(new URL('../../', import.meta.url)), '../shared/corpus');
const oracleFile = path.join(root, 'public-threads.json');

if (!fs.existsSync(oracleFile)) {
  t.comment(`the shared corpus is not at ${root}: the public-message run is skipped`);
  t.pass('skipped: no corpus');
} else {
  const oracle = JSON.parse(fs.readFileSync(oracleFile, 'utf8')) as { files: Record<string, { thread: number }> };
  const files = Object.keys(oracle.files).sort();

  t.test(`all ${files.length} messages parse without a crash and thread as the oracle says`, async (t) => {
    const keys: string[][] = [];
    const excused = new Set<number>();
    let parseProblems = 0;
    for (const [i, file] of files.entries()) {
      const raw = fs.readFileSync(path.join(root, file));
      const parsed = await parseMessage(raw, { timeoutMs: 10_000 });
      if (parsed.parseError) parseProblems++;
      const fields = parseHeaderBlock(raw);
      const midFields = headerValues(fields, 'message-id');
      // an excused message must not bridge the others either: it joins no component
      if (midFields.length > 1 || (midFields[0] !== undefined && !/[<@]/.test(midFields[0]))) excused.add(i);
      keys.push([`file:${file}`, ...(excused.has(i) ? [] : allNormalisedIds(extractIdHeaders(fields)))]);
    }
    t.pass(`${files.length} messages parsed (${parseProblems} kept with a parse problem noted)`);
    t.ok(parseProblems <= files.length * 0.01, 'at most 1% need the fallback for unreadable MIME');

    const components = trackedComponents(keys, () => true);
    const componentOf = files.map((_, i) => components.get(i)!.slice().sort()[0]!);
    const oursByOracle = new Map<number, Set<string>>();
    const oracleByOurs = new Map<string, Set<number>>();
    files.forEach((file, i) => {
      if (excused.has(i)) return;
      const o = oracle.files[file]!.thread;
      oursByOracle.set(o, (oursByOracle.get(o) ?? new Set()).add(componentOf[i]!));
      oracleByOurs.set(componentOf[i]!, (oracleByOurs.get(componentOf[i]!) ?? new Set()).add(o));
    });
    const split = [...oursByOracle].filter(([, s]) => s.size > 1).map(([o]) => o);
    const merged = [...oracleByOurs].filter(([, s]) => s.size > 1).map(([, s]) => [...s]);
    t.comment(`${excused.size} messages with several or bare Message-IDs left out of the comparison`);
    t.same(split, [], `none of the oracle's ${oursByOracle.size} threads is split`);
    t.same(merged, [], 'no two of its threads are merged');
  });
}
