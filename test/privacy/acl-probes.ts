import type { Test } from 'tap';
import { CANDIDATES, RELATIONS, userIdOf, type World } from './acl-world.js';
import { isAdmin, isSystem, mayReadMailboxOf, mayUnset, sees, type Actor } from './acl-actors.js';

/**
 * Every read path (and the secrecy switch itself) as a probe: the request an actor makes and
 * what it must answer, depending only on whether the actor may see T in this phase. The
 * matrix runs every probe for every actor in both phases (T open, T secret).
 */

export interface Req { method: string; url: string; body?: unknown }
export type Res = { status: number; body: unknown; headers: Headers; raw: Buffer };

export interface Probe {
  path: string;
  variant: string;
  /** The first request (after any setup it needs, made as an admin). */
  first: (a: Actor) => Req | Promise<Req>;
  /** Asserts the answer (and may ask more, e.g. the following pages). */
  check: (res: Res, a: Actor, secret: boolean, t: Test) => Promise<void>;
}

type Body = Record<string, unknown>;
type ErrorBody = { error: { code: string; message: string } };

export const ABSENT_THREAD = 't_absentabsentabsent';
export const ABSENT_MESSAGE = `m_${'A'.repeat(26)}`;
export const LINK_CANDIDATE = 'acl-link';

export function buildProbes(w: World, ask: (a: Actor, req: Req) => Promise<Res>, absent: Map<string, Res>, counter: { put: number }): Probe[] {
  const T = w.t.id;
  const root = { userId: 'acl-root', role: 'super_admin', relation: null, label: 'root', roleWithoutUser: false } as Actor;
  const admin = (req: Req) => ask(root, req);

  /** Hidden means "does not exist": the very answer a missing id gets, id for id. */
  const asMissing = (t: Test, res: Res, absentKey: string, realId: string, absentId: string, what: string) => {
    const miss = absent.get(absentKey)!;
    t.equal(res.status, 404, `${what}: 404`);
    t.same(res.body, JSON.parse(JSON.stringify(miss.body).split(absentId).join(realId)), `${what}: the same answer as for an id that does not exist`);
  };
  const forbidden = (t: Test, res: Res, what: string) => {
    t.equal(res.status, 403, `${what}: 403`);
    t.equal((res.body as ErrorBody).error?.code, 'forbidden', `${what}: forbidden`);
  };

  const probes: Probe[] = [];
  const add = (path: string, variant: string, first: Probe['first'], check: Probe['check']) => probes.push({ path, variant, first, check });

  add('GET /v1/threads/{id}', 'T', () => ({ method: 'GET', url: `/v1/threads/${T}` }), async (res, a, secret, t) => {
    if (!sees(a, secret)) return asMissing(t, res, 'thread', T, ABSENT_THREAD, 'thread');
    const b = res.body as Body & { messages: unknown[] };
    t.equal(res.status, 200, 'thread: 200');
    t.same([b.id, b.secret, b.messages.length], [T, secret, w.t.keys.length], 'thread: T with all its messages');
  });

  add('GET /v1/threads/{id}?candidateId=', 'T on c1', () => ({ method: 'GET', url: `/v1/threads/${T}?candidateId=c1` }), async (res, a, secret, t) => {
    if (!sees(a, secret)) return asMissing(t, res, 'thread', T, ABSENT_THREAD, 'thread on a profile');
    t.equal(res.status, 200, 'thread on a profile: 200');
    t.same([(res.body as Body).id, (res.body as Body).secret], [T, secret], 'thread on a profile: T');
  });

  // each cell on a fresh candidate linked to T, so removals made by one cell leave the others alone
  let removalCandidate = '';
  add('DELETE /v1/candidates/{id}/messages/{key} (removal)', 'first message of T', async () => {
    removalCandidate = `acl-rm-${++counter.put}`;
    const put = await admin({ method: 'PUT', url: `/v1/candidates/${removalCandidate}`, body: { emails: [CANDIDATES.c1] } });
    if (put.status !== 200) throw new Error(`setup of ${removalCandidate}: ${put.status}`);
    return { method: 'DELETE', url: `/v1/candidates/${removalCandidate}/messages/${w.t.first.key}` };
  }, async (res, a, secret, t) => {
    if (sees(a, secret)) {
      t.equal(res.status, 204, 'removal: 204');
      return;
    }
    const miss = await admin({ method: 'DELETE', url: `/v1/candidates/${removalCandidate}/messages/${ABSENT_MESSAGE}` });
    t.equal(res.status, 404, 'removal from a hidden thread: 404');
    t.same(res.body, JSON.parse(JSON.stringify(miss.body).split(ABSENT_MESSAGE).join(w.t.first.key)), 'removal: the same answer as for a message that does not exist');
    const still = await admin({ method: 'GET', url: `/v1/threads/${T}?candidateId=${removalCandidate}` });
    t.equal((still.body as { messages: unknown[] }).messages?.length, w.t.keys.length, 'removal: nothing was removed');
  });

  // erasure: a fresh candidate linked to T (by declaring T's first message for them) per cell
  add('DELETE /v1/candidates/{id} (erasure)', 'candidate on T', async () => {
    const cid = `acl-er-${++counter.put}`;
    const put = await admin({ method: 'PUT', url: `/v1/candidates/${cid}`, body: { emails: [`erase-${counter.put}@example.org`] } });
    const link = await admin({ method: 'POST', url: '/v1/outbound', body: { userId: userIdOf('from'), messageId: w.t.first.messageId, candidateIds: [cid] } });
    if (put.status !== 200 || link.status !== 201) throw new Error(`setup of ${cid}: ${put.status} ${link.status}`);
    return { method: 'DELETE', url: `/v1/candidates/${cid}` };
  }, async (res, a, _secret, t) => {
    // a data-protection request the ATS carries out: the ATS itself and admins, never a recruiter;
    // T is shared with other candidates, so it stays (unlinked from the erased one)
    if (!isSystem(a) && !isAdmin(a)) return forbidden(t, res, 'erasure by a user');
    t.equal(res.status, 204, 'erasure: 204');
    const still = await admin({ method: 'GET', url: `/v1/threads/${T}` });
    t.equal((still.body as { messages: unknown[] }).messages?.length, w.t.keys.length, 'erasure: T, shared with others, keeps its messages');
  });

  for (const key of w.t.keys) {
    add('GET /v1/messages/{key}', key, () => ({ method: 'GET', url: `/v1/messages/${key}` }), async (res, a, secret, t) => {
      if (!sees(a, secret)) return asMissing(t, res, 'message', key, ABSENT_MESSAGE, 'message');
      t.equal(res.status, 200, 'message: 200');
      t.equal((res.body as Body).threadId, T, 'message: of T');
    });
  }

  add('GET /v1/messages/{key}/raw', 'first', () => ({ method: 'GET', url: `/v1/messages/${w.t.first.key}/raw` }), async (res, a, secret, t) => {
    if (!sees(a, secret)) return asMissing(t, res, 'raw', w.t.first.key, ABSENT_MESSAGE, 'raw');
    t.equal(res.status, 200, 'raw: 200');
    t.ok(res.raw.toString().includes(w.t.first.messageId), 'raw: the original bytes');
  });

  add('GET /v1/messages/{key}/attachments/{id}', 'first', () => ({ method: 'GET', url: `/v1/messages/${w.t.first.key}/attachments/${w.t.first.attachmentId}` }), async (res, a, secret, t) => {
    if (!sees(a, secret)) return asMissing(t, res, 'attachment', w.t.first.key, ABSENT_MESSAGE, 'attachment');
    t.equal(res.status, 200, 'attachment: 200');
    t.equal(res.raw.toString(), 'salary: confidential\n', 'attachment: its bytes');
  });

  for (const cid of Object.keys(CANDIDATES) as Array<keyof typeof CANDIDATES>) {
    for (const limit of [1, 2, 100]) {
      add('GET /v1/candidates/{id}/threads', `${cid} limit=${limit}`, () => ({ method: 'GET', url: `/v1/candidates/${cid}/threads?limit=${limit}` }), async (first, a, secret, t) => {
        const expected = w.lists[cid].filter((id) => id !== T || sees(a, secret));
        const ids: string[] = [];
        let res = first;
        for (let page = 0; ; page++) {
          t.equal(res.status, 200, `list page ${page}: 200`);
          const b = res.body as { threads: Array<{ id: string; secret: boolean }>; nextCursor: string | null };
          ids.push(...b.threads.map((x) => x.id));
          for (const x of b.threads) if (x.id === T) t.equal(x.secret, secret, 'list: T says whether it is secret');
          if (b.nextCursor === null) {
            t.ok(b.threads.length > 0, 'list: the last page is not empty (an empty one would betray a hidden thread)');
            break;
          }
          t.equal(b.threads.length, limit, `list page ${page}: full while a next cursor is given`);
          if (!sees(a, secret)) t.notOk(b.nextCursor.includes(T), 'list: the cursor does not name the hidden thread');
          if (page > 10) throw new Error('list: too many pages');
          res = await ask(a, { method: 'GET', url: `/v1/candidates/${cid}/threads?limit=${limit}&cursor=${encodeURIComponent(b.nextCursor)}` });
        }
        t.same(ids, expected, 'list: exactly the threads the actor may see, newest first');
      });
    }
  }

  for (const owner of RELATIONS) {
    add('GET /v1/users/{id}/mailbox (counts)', owner, () => ({ method: 'GET', url: `/v1/users/${userIdOf(owner)}/mailbox` }), async (res, a, secret, t) => {
      if (!mayReadMailboxOf(a, owner)) return forbidden(t, res, 'mailbox of another user');
      t.equal(res.status, 200, 'mailbox: 200');
      const open = w.openInMailbox[owner];
      const shown = sees(a, secret);
      t.same((res.body as { counts: Body }).counts, {
        threads: open.threads + (shown ? 1 : 0), messages: open.messages + (shown ? w.tMessagesPerMailbox : 0), quarantined: shown ? 1 : 0,
      }, 'mailbox: counts only what the actor may see');
    });
  }

  for (const owner of RELATIONS) {
    add('GET /v1/imports/{id}', owner, () => ({ method: 'GET', url: `/v1/imports/${w.imports[owner]}` }), async (res, a, secret, t) => {
      if (!mayReadMailboxOf(a, owner)) {
        t.equal(res.status, 404, 'import of another user: 404');
        return;
      }
      t.equal(res.status, 200, 'import: 200');
      const b = res.body as Body;
      const n = sees(a, secret) ? 1 : 0;
      t.same([b.state, b.matched, b.threadsLinked, b.imported], ['done', n, n, n], 'import: counts only what the actor may see');
    });
  }

  for (const owner of [...RELATIONS, null]) {
    for (const limit of [1, 100]) {
      const scope = owner ? `?userId=${userIdOf(owner)}&` : '?';
      add('GET /v1/quarantine', `${owner ?? 'all'} limit=${limit}`, () => ({ method: 'GET', url: `/v1/quarantine${scope}limit=${limit}` }), async (first, a, secret, t) => {
        const allowed = owner ? mayReadMailboxOf(a, owner) : isSystem(a) || isAdmin(a);
        if (!allowed) return forbidden(t, first, 'quarantine of others');
        const expected = sees(a, secret) ? (owner ? 1 : RELATIONS.length) : 0;
        let res = first;
        const entries: Array<{ messageKey: string; threadId: string; userId: string }> = [];
        for (let page = 0; ; page++) {
          t.equal(res.status, 200, `quarantine page ${page}: 200`);
          const b = res.body as { entries: typeof entries; nextCursor: string | null };
          entries.push(...b.entries);
          if (b.nextCursor === null) break;
          t.equal(b.entries.length, limit, `quarantine page ${page}: full while a next cursor is given`);
          if (page > 10) throw new Error('quarantine: too many pages');
          res = await ask(a, { method: 'GET', url: `/v1/quarantine${scope}limit=${limit}&cursor=${encodeURIComponent(b.nextCursor)}` });
        }
        t.equal(entries.length, expected, 'quarantine: only entries of threads the actor may see');
        t.ok(entries.every((e) => e.threadId === T && RELATIONS.some((r) => e.userId === userIdOf(r) && e.messageKey === w.t.quarantined[r])), 'quarantine: the oversized messages of T, each in its mailbox');
      });
    }
  }

  add('POST /v1/candidates/{id}/threads (link)', 'second message of T', (a) => ({
    method: 'POST', url: `/v1/candidates/${LINK_CANDIDATE}/threads`, body: { userId: a.userId ?? userIdOf('from'), messageId: w.t.second.messageId },
  }), async (res, a, secret, t) => {
    if (a.userId === null) return forbidden(t, res, 'link for nobody');
    if (!sees(a, secret)) {
      const miss = absent.get(`link:${a.userId}`)!;
      t.equal(res.status, 404, 'link: 404');
      t.same(res.body, JSON.parse(JSON.stringify(miss.body).split('<acl-absent@example.org>').join(w.t.second.messageId)), 'link: the answer a message not in the mailbox gets');
      return;
    }
    t.equal(res.status, 201, 'link: 201');
    t.equal((res.body as Body).id, T, 'link: T');
  });

  add('POST /v1/outbound', 'first message of T', () => ({
    method: 'POST', url: '/v1/outbound', body: { userId: userIdOf('from'), messageId: w.t.first.messageId, candidateIds: ['c1'] },
  }), async (res, a, secret, t) => {
    if (!sees(a, secret)) {
      t.equal(res.status, 404, 'outbound into a hidden thread: 404');
      t.notOk(res.raw.toString().includes(T), 'outbound: no word of the hidden thread');
      return;
    }
    t.equal(res.status, 201, 'outbound: 201');
    t.equal((res.body as Body).id, T, 'outbound: T');
  });

  add('PUT /v1/candidates/{id} (threadsLinked)', 'address of c1', () => ({
    method: 'PUT', url: `/v1/candidates/acl-put-${++counter.put}`, body: { emails: [CANDIDATES.c1] },
  }), async (res, a, secret, t) => {
    t.equal(res.status, 200, 'candidate: 200');
    const others = w.lists.c1.filter((id) => id !== T).length;
    t.equal((res.body as Body).threadsLinked, others + (sees(a, secret) ? 1 : 0), 'candidate: counts only the linked threads the actor may see');
  });

  add('GET /v1/events', 'feed', () => ({ method: 'GET', url: '/v1/events?limit=1000' }), async (res, a, secret, t) => {
    if (!isSystem(a) && !isAdmin(a)) return forbidden(t, res, 'the change feed for a person');
    t.equal(res.status, 200, 'feed: 200');
    const ofT = (res.body as { events: Array<{ data: Body }> }).events.filter((e) => e.data.threadId === T);
    t.ok(ofT.length >= w.t.keys.length, 'feed: the ATS and admins get T\'s events');
  });

  add('GET /v1/audit', 'log', () => ({ method: 'GET', url: '/v1/audit?limit=1000' }), async (res, a, secret, t) => {
    // it names threads made secret, by whom: admins only
    if (!isAdmin(a)) return forbidden(t, res, 'the audit log for anyone but an admin');
    t.equal(res.status, 200, 'audit: 200');
    const setOfT = (res.body as { entries: Array<{ action: string; target: { threadId?: string } }> }).entries.filter((e) => e.action === 'thread.secret_set' && e.target.threadId === T);
    t.ok(secret ? setOfT.length > 0 : true, 'audit: an admin sees that T was made secret');
  });

  // HEAD: the same checks as GET without streaming the whole store to every cell
  add('GET /v1/admin/backup', 'backup (HEAD)', () => ({ method: 'HEAD', url: '/v1/admin/backup' }), async (res, a, _secret, t) => {
    t.equal(res.status, !isSystem(a) && !isAdmin(a) ? 403 : 200, 'backup: only the ATS itself and admins');
  });

  let eventOfT = '';
  add('POST /v1/events/{id}/redeliver', 'an event of T', async () => {
    eventOfT ||= (w.receiver.received.find((x) => x.body.data.threadId === T)?.body.id ?? '');
    return { method: 'POST', url: `/v1/events/${eventOfT}/redeliver` };
  }, async (res, a, _secret, t) => {
    if (!isSystem(a) && !isAdmin(a)) return forbidden(t, res, 'redelivery for a person');
    t.equal(res.status, 202, 'redeliver: 202');
  });

  add('GET /v1/admin/status', 'status', () => ({ method: 'GET', url: '/v1/admin/status' }), async (res, a, _secret, t) => {
    if (!isSystem(a) && !isAdmin(a)) return forbidden(t, res, 'operator status for a person');
    t.equal(res.status, 200, 'admin status: 200');
  });

  add('PUT /v1/threads/{id}/secret', 'T', () => ({ method: 'PUT', url: `/v1/threads/${T}/secret` }), async (res, a, secret, t) => {
    if (a.userId === null) {
      t.equal(res.status, 400, 'secret for nobody: 400');
      return;
    }
    if (!sees(a, secret)) return asMissing(t, res, 'thread', T, ABSENT_THREAD, 'make secret');
    t.equal(res.status, 200, 'make secret: 200');
    // making a secret thread secret again changes nothing: the one who made it secret keeps that
    t.same([(res.body as Body).secret, (res.body as Body).secretBy], [true, secret ? userIdOf('setter') : a.userId], 'make secret: the actor becomes secretBy, unless it already was secret');
    await restore(t, secret);
  });

  add('DELETE /v1/threads/{id}/secret', 'T', () => ({ method: 'DELETE', url: `/v1/threads/${T}/secret` }), async (res, a, secret, t) => {
    if (!sees(a, secret)) return asMissing(t, res, 'thread', T, ABSENT_THREAD, 'unset secret');
    if (secret && !mayUnset(a)) return forbidden(t, res, 'unset by a participant');
    t.equal(res.status, 204, 'unset secret: 204');
    await restore(t, secret);
  });

  /** Puts T back as the phase has it: secret by the setter, or open. */
  async function restore(t: Test, secret: boolean): Promise<void> {
    if (secret) t.equal((await ask({ ...root, userId: userIdOf('setter'), role: null, relation: 'setter' }, { method: 'PUT', url: `/v1/threads/${T}/secret` })).status, 200, 'restored: secret by the setter');
    else t.equal((await admin({ method: 'DELETE', url: `/v1/threads/${T}/secret` })).status, 204, 'restored: open');
    const now = (await admin({ method: 'GET', url: `/v1/threads/${T}` })).body as Body;
    t.same([now.secret, now.secretBy], [secret, secret ? userIdOf('setter') : null], 'restored');
  }

  return probes;
}
