// The seeded mailbox generator that benchmarks and large-mailbox tests load Dovecot with:
// same seed, same bytes; the ATS share holds; what it writes is what Dovecot serves.
import t from 'tap';
import crypto from 'node:crypto';
import { ImapFlow } from 'imapflow';
import { generateMailbox, loadMailbox, atsReply } from '../../scripts/bench/generate-mailbox.mjs';
import { parseMessage } from '../../daemon/mail/parse.js';
import { dovecotEnv } from '../helpers/dovecot.js';

t.test('the same seed gives the same mailbox, another seed another one', async (t) => {
  const a = [...generateMailbox({ seed: 5, count: 200 }).messages];
  const b = [...generateMailbox({ seed: 5, count: 200 }).messages];
  const c = [...generateMailbox({ seed: 6, count: 200 }).messages];
  t.equal(a.length, 200);
  t.ok(a.every((m, i) => m.raw.equals(b[i]!.raw)), 'byte-identical');
  t.notOk(a.every((m, i) => m.raw.equals(c[i]!.raw)), 'different seed differs');
});

t.test('ATS share, clients and attachments are as asked, and every message parses', async (t) => {
  const { messages, summary } = generateMailbox({ seed: 2, count: 1000, atsShare: 0.05 });
  const all = [...messages];
  // the share is kept to within one thread (at most 5 messages)
  t.ok(summary.counts.ats >= 50 && summary.counts.ats <= 55, `5 % of messages are in ATS threads (${summary.counts.ats})`);
  t.ok(summary.counts.INBOX > 0 && summary.counts.Sent > 0, 'both folders');
  t.ok(summary.counts.attachments > 50, 'some carry attachments');
  const raws = all.map((m) => m.raw.toString('latin1'));
  t.ok(raws.some((r) => /^Thread-Index: /m.test(r)), 'Outlook Thread-Index');
  t.ok(raws.some((r) => /@mail\.gmail\.com>/.test(r)), 'Gmail ids');
  t.ok(raws.some((r) => /X-Mailer: Apple Mail/.test(r)), 'Apple Mail');
  t.ok(raws.some((r) => /Thunderbird\//.test(r)), 'Thunderbird');
  t.ok(summary.atsThreads.every((th) => /@ats\.example\.net>$/.test(th.messageIds[0]!)), 'ATS threads start with an ATS id');
  for (const m of all.filter((_, i) => i % 50 === 0 || all[i]!.ats)) {
    const p = await parseMessage(m.raw, { timeoutMs: 5_000 });
    if (p.parseError !== null || p.ids.messageId !== m.messageId) t.fail(`message ${m.messageId} parses as ${p.ids.messageId} (${p.parseError})`);
  }
  const reply = atsReply(summary.atsThreads[0]!, { n: 1 });
  const p = await parseMessage(reply.raw, { timeoutMs: 5_000 });
  t.equal(p.ids.inReplyTo, summary.atsThreads[0]!.messageIds.at(-1), 'a generated reply answers the last message of its thread');
});

t.test('a mailbox written as maildir is what Dovecot serves', async (t) => {
  const env = dovecotEnv();
  const user = `gen-${crypto.randomBytes(5).toString('hex')}`;
  const summary = await loadMailbox(env.dir, { user, pass: 'pw-generated', count: 120, seed: 9 });
  const client = new ImapFlow({ host: env.host, port: env.port, secure: false, doSTARTTLS: false, logger: false, auth: { user, pass: 'pw-generated' } });
  client.on('error', () => {});
  await client.connect();
  t.teardown(() => client.logout().catch(() => client.close()));
  const expected = [...generateMailbox({ count: 120, seed: 9 }).messages];
  for (const folder of ['INBOX', 'Sent'] as const) {
    const box = await client.mailboxOpen(folder, { readOnly: true });
    t.equal(box.exists, summary.counts[folder], `${folder} holds what was generated`);
    const served = await client.fetchAll('1:*', { envelope: true, internalDate: true, size: true });
    const byId = new Map(expected.filter((m) => m.folder === folder).map((m) => [m.messageId, m]));
    for (const s of served) {
      const m = byId.get(s.envelope?.messageId ?? '');
      if (!m) t.fail(`unexpected message ${s.envelope?.messageId}`);
      else if (s.size !== m.raw.length || new Date(s.internalDate!).getTime() !== Math.floor(m.date.getTime() / 1000) * 1000) t.fail(`${m.messageId}: size or date differ`);
    }
  }
});
