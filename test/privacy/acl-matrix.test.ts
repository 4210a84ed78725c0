import t from 'tap';
import { appendMessage, buildMessage } from '../helpers/dovecot.js';
import { WEBHOOK_SECRET } from '../helpers/daemon.js';
import { verifySignature } from '../../daemon/events/signature.js';
import { CANDIDATES, RELATIONS, seedWorld, userIdOf } from './acl-world.js';
import { ACTORS, headersOf, sees, type Actor } from './acl-actors.js';
import { ABSENT_MESSAGE, ABSENT_THREAD, buildProbes, LINK_CANDIDATE, type Req, type Res } from './acl-probes.js';

/**
 * Secret threads on every read path, as a generated matrix: every actor (six relations to
 * thread T × three roles, the ATS itself, a role claimed for nobody) × every probe of every
 * read path × T open and T secret. One world, seeded once through real IMAP sync and imports;
 * every cell asserts what the actor must get. Each path has cells where T must be hidden and
 * cells where it must show, so removing the check from any path fails the matrix.
 */

t.setTimeout(600_000);

t.test('secret threads: the ACL matrix', async (t) => {
  const w = await seedWorld(t);
  const { d } = w;
  const ask = (a: Actor, req: Req): Promise<Res> => d.api(req.method, req.url, { ...headersOf(a), ...(req.body === undefined ? {} : { body: req.body }) }) as Promise<Res>;
  const root: Actor = { label: 'root', userId: 'acl-root', role: 'super_admin', relation: null, roleWithoutUser: false };
  t.equal((await ask(root, { method: 'PUT', url: `/v1/candidates/${LINK_CANDIDATE}`, body: { emails: ['link.target@example.org'] } })).status, 200);

  // what a missing id gets, to compare hidden answers with
  const absent = new Map<string, Res>([
    ['thread', await ask(root, { method: 'GET', url: `/v1/threads/${ABSENT_THREAD}` })],
    ['message', await ask(root, { method: 'GET', url: `/v1/messages/${ABSENT_MESSAGE}` })],
    ['raw', await ask(root, { method: 'GET', url: `/v1/messages/${ABSENT_MESSAGE}/raw` })],
    ['attachment', await ask(root, { method: 'GET', url: `/v1/messages/${ABSENT_MESSAGE}/attachments/${w.t.first.attachmentId}` })],
  ]);
  for (const r of RELATIONS) {
    const me: Actor = { label: r, userId: userIdOf(r), role: null, relation: r, roleWithoutUser: false };
    absent.set(`link:${userIdOf(r)}`, await ask(me, { method: 'POST', url: `/v1/candidates/${LINK_CANDIDATE}/threads`, body: { userId: userIdOf(r), messageId: '<acl-absent@example.org>' } }));
  }
  for (const [k, res] of absent) t.equal(res.status, 404, `a missing ${k} is 404`);

  const probes = buildProbes(w, ask, absent, { put: 0 });
  const stats = new Map<string, { cells: number; hidden: number; shown: number }>();
  let cells = 0;

  for (const secret of [false, true]) {
    const phase = secret ? 'T secret' : 'T open';
    if (secret) {
      const set = await ask({ ...root, userId: userIdOf('setter'), role: null, relation: 'setter' }, { method: 'PUT', url: `/v1/threads/${w.t.id}/secret` });
      t.same([set.status, (set.body as { secretBy: string }).secretBy], [200, userIdOf('setter')], 'the setter makes T secret');
    }
    for (const probe of probes) {
      for (const actor of ACTORS) {
        await t.test(`${phase} · ${probe.path} [${probe.variant}] · ${actor.label}`, async (t) => {
          const req = await probe.first(actor);
          const res = await ask(actor, req);
          if (actor.roleWithoutUser) {
            t.equal(res.status, 400, 'a role without a user: 400');
            // (a HEAD answer has no body)
            if (req.method !== 'HEAD') t.match(res.body, { error: { code: 'invalid_request', message: /X-Acting-User/ } }, 'the error names the missing header');
          } else {
            await probe.check(res, actor, secret, t);
          }
        });
        cells++;
        const s = stats.get(probe.path) ?? { cells: 0, hidden: 0, shown: 0 };
        s.cells++;
        if (!actor.roleWithoutUser) {
          if (sees(actor, secret)) s.shown++;
          else s.hidden++;
        }
        stats.set(probe.path, s);
      }
    }
  }

  await t.test('every path has cells where T must be hidden and cells where it must show', async (t) => {
    for (const [path, s] of stats) {
      t.ok(s.hidden > 0 && s.shown > 0, `${path}: ${s.cells} cells, ${s.hidden} hidden, ${s.shown} shown`);
    }
  });

  await t.test('webhooks and the change feed carry secret: true for a secret thread', async (t) => {
    const ofT = (type: string) => w.receiver.ofType(type).filter((x) => x.body.data.threadId === w.t.id);
    t.ok(ofT('message.created').length >= w.t.keys.length, 'T\'s messages were announced');
    t.ok(ofT('message.created').every((x) => x.body.data.secret === false), 'while T was open: secret false');
    const linked = ofT('thread.linked');
    t.ok(linked.some((x) => x.body.data.secret === true), 'links made while T was secret say secret: true');
    t.ok(linked.some((x) => x.body.data.secret === false), 'links made while T was open say secret: false');
    t.ok(linked.every((x) => typeof x.body.data.secret === 'boolean'), 'every thread.linked says whether the thread is secret');

    // a new reply to the secret thread, through the live IMAP sync of the `to` user's mailbox
    const messageId = `<acl-late-${Date.now()}@example.org>`;
    await appendMessage(w.logins.to, 'INBOX', buildMessage({
      from: CANDIDATES.c1, to: w.logins.to.address, subject: 'Re: offer', messageId, inReplyTo: w.t.first.messageId, references: w.t.first.messageId, text: 'One more thing.',
    }));
    const hook = await w.receiver.waitFor((x) => (x.body.data.message as { messageId?: string } | undefined)?.messageId === messageId, 'the webhook of the late reply', 30_000);
    t.same([hook.body.type, hook.body.data.threadId, hook.body.data.secret], ['message.created', w.t.id, true], 'the webhook says secret: true');
    t.ok(verifySignature(WEBHOOK_SECRET, String(hook.headers['x-mailsync-signature']), hook.raw), 'signed');
    const feed = await ask({ ...root, userId: null, role: null }, { method: 'GET', url: '/v1/events?limit=1000' });
    const inFeed = (feed.body as { events: Array<{ id: string; data: Record<string, unknown> }> }).events.find((e) => e.id === hook.body.id);
    t.equal(inFeed?.data.secret, true, 'the change feed says secret: true');
    const hidden = await ask(ACTORS.find((a) => a.label === 'unrelated/user')!, { method: 'GET', url: `/v1/messages/${(hook.body.data.message as { id: string }).id}` });
    t.equal(hidden.status, 404, 'the new message is hidden from an unrelated user like the rest of T');
  });

  t.comment(`ACL matrix: ${cells} cells asserted (${ACTORS.length} actors × ${probes.length} probes × 2 phases) over ${stats.size} paths`);
  console.log(`# ACL matrix: ${cells} cells asserted (${ACTORS.length} actors × ${probes.length} probes × 2 phases) over ${stats.size} paths`);
});
