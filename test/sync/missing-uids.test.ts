import t from 'tap';
import { MissingUids, MISSING_RETRY_MS } from '../../daemon/sync/missing-uids.js';

/** A message announced but not delivered is looked at again on a growing schedule, then given up so the folder moves on. */

t.test('looks again on a growing schedule, then gives the message up', async (t) => {
  const m = new MissingUids();
  const delays: Array<number | null> = [];
  for (let i = 0; i <= MISSING_RETRY_MS.length; i++) delays.push(m.next('INBOX\n7\n42'));
  t.same(delays.slice(0, -1), MISSING_RETRY_MS, 'each new look waits longer');
  t.equal(delays.at(-1), null, 'after the last look it is given up');
  t.ok(MISSING_RETRY_MS.reduce((a, b) => a + b, 0) >= 30_000, 'a server gets at least 30 s to catch up');
  t.equal(m.size, 0, 'nothing is remembered about a message given up');
});

t.test('messages are counted apart, and one delivered in the end is forgotten', async (t) => {
  const m = new MissingUids();
  m.next('INBOX\n7\n1');
  m.next('INBOX\n7\n1');
  t.equal(m.next('INBOX\n7\n2'), MISSING_RETRY_MS[0], 'another message starts from the first delay');
  m.clear('INBOX\n7\n1');
  t.equal(m.next('INBOX\n7\n1'), MISSING_RETRY_MS[0], 'a cleared one starts again');
});
