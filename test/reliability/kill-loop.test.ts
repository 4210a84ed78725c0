import path from 'node:path';
import t from 'tap';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { spawnDaemon, writeConfig, type DaemonProcess } from '../helpers/daemon-process.js';
import { deliverToMaildir } from '../helpers/maildir.js';
import { tempDir } from '../helpers/stack.js';
import { prng, recruitingMailbox, type MixMessage } from '../fixtures/recruiting-mailbox.js';

/**
 * Crash safety of the real process: the daemon is killed with SIGKILL at random moments, again
 * and again, while 2,000 messages (ATS threads among unrelated mail, arriving round by round,
 * some replies before their parents) are synced from Dovecot and webhooks are delivered to a
 * receiver that sometimes refuses. After the last restart: every tracked message is stored
 * exactly once and nothing else is, every event was delivered at least once, no message has
 * two event ids, and each thread's events arrived in commit order.
 * The seed is printed; MAILSYNC_TEST_SEED=<n> replays a run.
 */

t.setTimeout(600_000);

const KILLS = 22;
const TOTAL = 2_000;
const ATS_THREADS = 180;
const CANDIDATES = 30;

interface FeedEvent { id: string; type: string; cursor: string; data: { threadId?: string; message?: { id: string; messageId: string }; state?: string }; delivery: { status: string } }

async function readFeed(d: DaemonProcess): Promise<FeedEvent[]> {
  const all: FeedEvent[] = [];
  let after = '0';
  for (;;) {
    const page = await d.api<{ events: FeedEvent[]; nextCursor: string }>('GET', `/v1/events?after=${after}&limit=1000`);
    all.push(...page.body.events);
    if (page.body.events.length < 1000) return all;
    after = page.body.nextCursor;
  }
}

t.test('kill -9 at random points while 2,000 messages sync and webhooks are delivered', async (t) => {
  const seed = Number(process.env.MAILSYNC_TEST_SEED ?? Math.floor(Math.random() * 1e9));
  t.comment(`seed ${seed} (MAILSYNC_TEST_SEED=${seed} replays this run)`);
  const rnd = prng(seed ^ 0x5eed);
  const login = await createMailbox('killloop');
  const env = dovecotEnv();
  const mix = recruitingMailbox({ recruiter: login.address, total: TOTAL, atsThreads: ATS_THREADS, candidates: CANDIDATES, rounds: KILLS, seed });
  const tracked = mix.filter((m) => m.thread !== null);
  const trackedIds = new Set(tracked.map((m) => m.messageId));
  const deliverRound = (round: number) => {
    for (const m of mix.filter((x) => x.round === round)) deliverToMaildir(path.join(env.dir, 'mail'), login.user, m.folder, m.raw, { seen: m.folder === 'Sent' });
  };

  // a receiver that refuses about one first attempt in ten
  const firstAttempt = new Set<string>();
  const receiver = await startReceiver(t, (w) => {
    const first = !firstAttempt.has(w.body.id);
    firstAttempt.add(w.body.id);
    return first && parseInt(w.body.id.slice(-2), 36) % 10 === 0 ? 500 : 200;
  });
  const dir = tempDir(t);
  const logFile = path.join(dir, 'daemon.log');
  const configFile = writeConfig(dir, {
    webhooks: { url: receiver.url, secret: WEBHOOK_SECRET, retry: { attempts: 1000, initialDelayMs: 50, maxDelayMs: 1_000, jitter: 0.2 } },
    sync: { tlsCaFile: env.caFile, sentPollSeconds: 1, connectTimeoutSeconds: 5, backoff: { minMs: 100, maxMs: 1_000, resetAfterSeconds: 5 } },
  });

  deliverRound(0);
  let kills = 0;
  for (let round = 1; round <= KILLS; round++) {
    const d = await spawnDaemon(t, configFile, logFile);
    if (round === 1) {
      await d.api('PUT', '/v1/users/u1', { email: login.address, name: 'Robin Recruiter' });
      for (let c = 0; c < CANDIDATES; c++) await d.api('PUT', `/v1/candidates/c${c}`, { emails: [`cand${c}@example.org`], name: `Candidate ${c}` });
      const consent = await d.api('PUT', '/v1/users/u1/mailbox', { imap: { host: env.host, port: env.port, secure: false, auth: { user: login.user, pass: login.pass } }, syncSince: '2020-01-01T00:00:00Z' }, 'u1');
      t.equal(consent.status, 202, 'consent granted in the first run');
    }
    // new mail keeps arriving while the daemon runs
    deliverRound(round);
    // a random moment: during the initial sync, a catch-up, a store batch or a delivery
    await new Promise((r) => setTimeout(r, 300 + Math.floor(rnd() * 3_200)));
    d.child.kill('SIGKILL');
    const { signal } = await d.exited;
    if (signal === 'SIGKILL') kills++;
    t.comment(`kill ${round}: ${new Set(receiver.received.map((w) => w.body.id)).size} events delivered so far`);
  }
  t.ok(kills >= 20, `${kills} runs ended by SIGKILL`);

  const d = await spawnDaemon(t, configFile, logFile);
  let progress = '';
  const feed = await waitUntil(async () => {
    const events = await readFeed(d);
    const created = events.filter((e) => e.type === 'message.created');
    const undelivered = events.filter((e) => e.delivery.status !== 'delivered').length;
    const have = new Set(created.map((e) => e.data.message!.messageId));
    progress = `${created.length} stored, ${undelivered} undelivered, missing: ${tracked.filter((m) => !have.has(m.messageId)).slice(0, 10).map((m) => `${m.messageId} (${m.folder}, round ${m.round})`).join(', ')}`;
    return created.length >= tracked.length && undelivered === 0 ? events : null;
  }, `all ${tracked.length} tracked messages stored and every event delivered`, 240_000, 500).catch((err: Error) => {
    throw new Error(`${err.message}; ${progress}`);
  });

  await t.test('every tracked message is stored exactly once, nothing else is', async (t) => {
    const created = feed.filter((e) => e.type === 'message.created');
    const byMessageId = new Map<string, FeedEvent[]>();
    for (const e of created) byMessageId.set(e.data.message!.messageId, [...(byMessageId.get(e.data.message!.messageId) ?? []), e]);
    t.equal(created.length, tracked.length, `${tracked.length} message.created events`);
    t.same([...byMessageId.keys()].filter((id) => !trackedIds.has(id)), [], 'no untracked message was stored');
    t.same(tracked.filter((m) => !byMessageId.has(m.messageId)).map((m) => m.messageId), [], 'no tracked message is missing');
    t.same([...byMessageId].filter(([, es]) => es.length > 1).map(([id]) => id), [], 'no message has two events');
    const keys = created.map((e) => e.data.message!.id);
    t.equal(new Set(keys).size, keys.length, 'no message key has two event ids');

    // each ATS thread is one stored thread holding its messages in conversation order
    const threadOf = new Map<string, string>();
    for (const e of created) threadOf.set(e.data.message!.messageId, (await d.api<{ threadId: string }>('GET', `/v1/messages/${e.data.message!.id}`)).body.threadId);
    const expected = new Map<string, MixMessage[]>();
    for (const m of tracked) expected.set(m.thread!, [...(expected.get(m.thread!) ?? []), m]);
    let ordered = 0;
    for (const [name, msgs] of expected) {
      const ids = new Set(msgs.map((m) => threadOf.get(m.messageId)));
      if (ids.size !== 1) {
        t.fail(`${name}: split over ${ids.size} threads`);
        continue;
      }
      const thread = await d.api<{ messages: Array<{ messageId: string }> }>('GET', `/v1/threads/${[...ids][0]}`);
      const want = [...msgs].sort((a, b) => a.position - b.position).map((m) => m.messageId);
      if (JSON.stringify(thread.body.messages.map((m) => m.messageId)) === JSON.stringify(want)) ordered++;
      else t.same(thread.body.messages.map((m) => m.messageId), want, `${name}: every message once, in order`);
    }
    t.equal(ordered, ATS_THREADS, `all ${ATS_THREADS} threads hold exactly their messages, in order`);
  });

  await t.test('every event was delivered at least once, each thread in commit order', async (t) => {
    const receivedIds = new Set(receiver.received.map((w) => w.body.id));
    t.same(feed.filter((e) => !receivedIds.has(e.id)).map((e) => e.id), [], `all ${feed.length} events reached the receiver`);
    const dupes = receiver.received.length - receivedIds.size;
    t.comment(`${receiver.received.length} deliveries for ${receivedIds.size} events (${dupes} repeated after a kill: at-least-once)`);
    const seqOf = new Map(feed.map((e) => [e.id, Number(e.cursor)]));
    const firstSeen: Record<string, number[]> = {};
    const seen = new Set<string>();
    for (const w of receiver.received) {
      if (seen.has(w.body.id)) continue;
      seen.add(w.body.id);
      const key = String(w.body.data.threadId ?? `mbx:${String(w.body.data.userId)}`);
      (firstSeen[key] ??= []).push(seqOf.get(w.body.id)!);
    }
    const outOfOrder = Object.entries(firstSeen).filter(([, seqs]) => seqs.some((s, i) => i > 0 && s < seqs[i - 1]!));
    t.same(outOfOrder.map(([k]) => k), [], `events of each of ${Object.keys(firstSeen).length} threads first arrived in commit order`);
  });

  d.child.kill('SIGTERM');
  t.same(await d.exited, { code: 0, signal: null }, 'the last run stops cleanly on SIGTERM');
});
