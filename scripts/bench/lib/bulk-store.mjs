// A big store written in bulk through the store layer (dist/daemon/store): threads,
// messages and every index the daemon keeps for them, in the daemon's key layout and record
// shapes, sealed as the daemon seals them. Ingesting a million messages one by one through
// IMAP would take hours; the API reads the same records either way.
import path from 'node:path';
import { createRandom, paragraphText } from './message-flavors.mjs';
import { root } from './harness.mjs';
import { openStack } from './stack.mjs';

export const ACTOR = 'u-api';
const ACTOR_ADDRESS = 'robin.recruiter@example.com';

/**
 * `messages` messages in threads of 10, spread over candidates: most have one to four
 * threads, `heavy` candidates have 1,000 threads each. 5 % of threads are secret (made so by
 * another user, so the acting user's list must skip them). Returns the candidate ids.
 */
export async function writeBulkStore(dir, { messages, heavy = 10, seed = 51, log = () => {} }) {
  const { K } = await import(path.join(root, 'dist/daemon/store/keys.js'));
  const { store } = await openStack(dir);
  const rnd = createRandom(seed);
  const perThread = 10;
  const threadCount = Math.ceil(messages / perThread);
  const heavyIds = Array.from({ length: heavy }, (_, i) => `c-heavy-${i}`);
  const normal = [];
  const now = new Date().toISOString();
  const texts = Array.from({ length: 64 }, () => paragraphText(rnd, rnd.skewed(700, 4000)));
  let batch = store.batch();
  let uid = 0, cand = null, candLeft = 0, written = 0;
  const flush = async (force = false) => {
    if (batch.size < 5_000 && !force) return;
    await batch.write();
    batch = store.batch();
  };
  for (let t = 0; t < threadCount; t++) {
    const isHeavy = t < heavy * 1000;
    if (isHeavy) cand = heavyIds[t % heavy];
    else if (candLeft-- <= 0) {
      cand = `c-${normal.length}`;
      normal.push(cand);
      candLeft = rnd.range(1, 4) - 1;
      const email = `${cand}@example.org`;
      batch.put(K.candidate(cand), { id: cand, emails: [email], name: `Candidate ${normal.length}`, createdAt: now, updatedAt: now });
      batch.put(K.candAddr(email, cand), '');
    }
    const candAddr = `${cand}@example.org`;
    const tid = `t_bulk${t.toString(36).padStart(6, '0')}`;
    const start = 1_700_000_000_000 + rnd.int(60 * 86_400_000);
    const secret = rnd.chance(0.05);
    let last = '';
    const rootId = `<${tid}.start@ats.example.net>`;
    for (let i = 0; i < perThread && written < messages; i++, written++) {
      const date = new Date(start + i * 3_600_000).toISOString();
      const key = `m_bulk${written.toString(36).padStart(8, '0')}`;
      const messageId = i === 0 ? rootId : `<${key}@mail.example.org>`;
      const inbound = i % 2 === 1;
      const from = inbound ? { address: candAddr, name: 'Casey Candidate' } : { address: ACTOR_ADDRESS, name: 'Robin Recruiter' };
      const to = [inbound ? { address: ACTOR_ADDRESS, name: 'Robin Recruiter' } : { address: candAddr, name: 'Casey Candidate' }];
      const text = texts[written % texts.length];
      batch.put(K.message(key), {
        key, threadId: tid, messageId, messageIdAlternatives: [], aliases: [], inReplyTo: i ? rootId : null, references: i ? [rootId] : [], date,
        direction: inbound ? 'inbound' : 'outbound', from, to, cc: [], subject: `${i ? 'Re: ' : ''}Your application ${t}`, text, html: null,
        snippet: text.slice(0, 140), attachments: [], seenIn: [{ userId: ACTOR, folder: inbound ? 'INBOX' : 'Sent' }], autoReply: false,
        rawStored: false, size: text.length + 900, parseError: null, createdAt: now,
      });
      batch.put(K.threadMessage(tid, date, key), '');
      batch.put(K.location(ACTOR, inbound ? 'INBOX' : 'Sent', '1', ++uid), key);
      batch.put(K.matchKey(messageId.slice(1, -1).toLowerCase()), tid);
      batch.put(K.threadMatchKey(tid, messageId.slice(1, -1).toLowerCase()), '');
      last = date;
    }
    const thread = {
      id: tid, subject: `Your application ${t}`, origin: 'ats', candidateIds: [cand], ownerUserIds: [ACTOR], secret, secretBy: secret ? 'u-other' : null,
      // secret threads are between another recruiter and the candidate: the actor is no participant
      participants: [secret ? 'other.recruiter@example.com' : ACTOR_ADDRESS, candAddr], messageCount: perThread, lastMessageAt: last,
      snippet: texts[t % texts.length].slice(0, 140), createdAt: now,
    };
    batch.put(K.thread(tid), thread);
    const act = K.candActivity(cand, last, tid);
    batch.put(act, '');
    batch.put(K.candThread(cand, tid), act);
    for (const p of thread.participants) batch.put(K.addrThread(p, tid), '');
    await flush();
    if (t % 10_000 === 0 && t) log(`${written} messages written`);
  }
  await flush(true);
  await store.compact();
  await store.close();
  return { heavy: heavyIds, normal, threads: threadCount, messages: written };
}
