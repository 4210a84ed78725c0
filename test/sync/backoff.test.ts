import t from 'tap';
import fc from 'fast-check';
import { Backoff } from '../../daemon/sync/backoff.js';

/** Reconnect delays an operator can reason about: growing, capped, jittered, reset only after a stable connection. */

const opts = { minMs: 1_000, maxMs: 300_000, resetAfterMs: 120_000 };

t.test('a server that keeps refusing is retried less and less often, up to the cap', async (t) => {
  const b = new Backoff(opts, () => 1);
  const delays = Array.from({ length: 12 }, () => b.next(0));
  t.same(delays.slice(0, 5), [1_000, 2_000, 4_000, 8_000, 16_000], 'doubling with no jitter drawn');
  t.equal(Math.max(...delays), 300_000, 'never more than maxMs');
});

t.test('a connection that accepts and drops at once does not reset the backoff; one that stayed up does', async (t) => {
  const b = new Backoff(opts, () => 1);
  b.next(0);
  b.next(5_000);
  t.equal(b.next(5_000), 4_000, 'up for 5 s: still backing off');
  t.equal(b.next(opts.resetAfterMs), 1_000, 'up for resetAfterMs: back to the first delay');
});

t.test('jitter keeps every delay between half and all of its step, and honours a server-given minimum', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 30 }), fc.nat(600_000), (draws, atLeast) => {
      let i = 0;
      const b = new Backoff(opts, () => draws[i++ % draws.length]!);
      for (let n = 0; n < draws.length; n++) {
        const step = Math.min(opts.maxMs, opts.minMs * 2 ** n);
        const d = b.next(0);
        if (d < step / 2 - 1 || d > step + 1) return false;
      }
      return b.next(0, atLeast) >= atLeast;
    }),
  );
  t.pass('property held for generated jitter draws');
});
