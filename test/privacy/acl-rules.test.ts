import t from 'tap';
import fc from 'fast-check';
import { canSeeThread, canUnsetSecret, type Actor } from '../../daemon/api/acl.js';
import { normaliseAddress } from '../../daemon/threads/addresses.js';
import type { Role } from '../../daemon/store/records.js';

/**
 * The secrecy decision itself, on generated threads and actors (the matrix in
 * acl-matrix.test.ts proves every route asks it): an open thread is everyone's; a secret one is
 * seen by admins, its setter and its participants however their address is spelt in the mail
 * (case, Gmail dots and +tags), by nobody else, and never by a request acting for no person.
 */

const normalise = (a: string) => normaliseAddress(a);
const roles = fc.constantFrom<Role>('user', 'admin', 'super_admin');
const local = fc.stringMatching(/^[a-z]{1,6}(\.[a-z]{1,4})?$/);
const domain = fc.constantFrom('example.com', 'example.org', 'gmail.com');

/** The same mailbox as mail may write it: any case, and at Gmail extra dots and a +tag. */
const spelling = (l: string, d: string) => fc.tuple(fc.boolean(), fc.boolean(), fc.boolean()).map(([upper, dots, tag]) => {
  let local_ = l;
  let domain_ = d;
  if (d === 'gmail.com') {
    if (dots) local_ = local_.split('').join('.').replace(/\.\.+/g, '.');
    if (tag) local_ = `${local_}+jobs`;
    if (upper) domain_ = 'googlemail.com';
  }
  const address = `${local_}@${domain_}`;
  return upper ? address.toUpperCase() : address;
});

const person = fc.record({ local, domain });

t.test('a secret thread: admins, the setter and participants (any spelling) see it, nobody else', async (t) => {
  const meAndSpelling = person.chain((me) => fc.tuple(fc.constant(me), spelling(me.local, me.domain)));
  fc.assert(fc.property(
    fc.array(person, { minLength: 1, maxLength: 5 }), meAndSpelling, roles, fc.boolean(), fc.boolean(),
    (others, [me, written], role, participates, setter) => {
      const myAddress = `${me.local}@${me.domain}`;
      const participants = [...others.map((o) => `${o.local}@${o.domain}`), ...(participates ? [written] : [])];
      const actor: Actor = { userId: 'me', role, addresses: new Set([normalise(myAddress)]) };
      const thread = { secret: true, secretBy: setter ? 'me' : 'someone-else', participants };
      const isParticipant = participates || others.some((o) => normalise(`${o.local}@${o.domain}`) === normalise(myAddress));
      const expected = role !== 'user' || setter || isParticipant;
      return canSeeThread(actor, thread, normalise) === expected
        && canSeeThread(actor, { ...thread, secret: false }, normalise)
        && canSeeThread({ userId: null, role, addresses: actor.addresses }, thread, normalise) === false
        && canUnsetSecret(actor, thread) === (role !== 'user' || setter);
    },
  ), { numRuns: 2_000 });
  t.pass('2,000 generated threads and actors');
});
