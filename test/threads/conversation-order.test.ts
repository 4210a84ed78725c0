import t from 'tap';
import fc from 'fast-check';
import { conversationOrder } from '../../daemon/store/threads.js';

/** Messages of a thread read in the order a person expects, even when Date headers share a second. */

interface M { date: string; messageId: string | null; inReplyTo: string | null; references: string[]; createdAt: string; name: string }

const second = '2026-11-02T09:15:00.000Z';
/** A chain original → reply → reply-to-reply → …, all in the same second. */
function chain(n: number): M[] {
  const out: M[] = [];
  for (let i = 0; i < n; i++) {
    const id = `<m${i}@example.org>`;
    out.push({ date: second, messageId: id, inReplyTo: i ? `<m${i - 1}@example.org>` : null, references: out.map((m) => m.messageId!), createdAt: `2026-11-02T09:15:0${9 - i}.000Z`, name: `m${i}` });
  }
  return out;
}

t.test('a reply in the same second as its original comes after it, whatever order they were stored in', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 7 }).chain((n) => fc.tuple(fc.constant(n), fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n }))), ([n, perm]) => {
      const msgs = chain(n);
      const ordered = conversationOrder(perm.map((i) => msgs[i]!));
      return ordered.map((m) => m.name).join() === msgs.map((m) => m.name).join();
    }),
  );
  t.pass('parents first for every storage order');
});

t.test('different dates still win over conversation shape', async (t) => {
  const [a, b] = chain(2);
  const earlierReply = { ...b!, date: '2026-11-02T09:14:59.000Z' };
  t.same(conversationOrder([a!, earlierReply]).map((m) => m.name), ['m1', 'm0'], 'a reply dated earlier (a skewed clock) is listed by its date');
});

t.test('unrelated messages in the same second keep the order they were stored in', async (t) => {
  const x: M = { date: second, messageId: '<x@example.org>', inReplyTo: null, references: [], createdAt: '2026-11-02T09:20:00.000Z', name: 'x' };
  const y: M = { ...x, messageId: '<y@example.org>', createdAt: '2026-11-02T09:19:00.000Z', name: 'y' };
  t.same(conversationOrder([x, y]).map((m) => m.name), ['y', 'x']);
});
