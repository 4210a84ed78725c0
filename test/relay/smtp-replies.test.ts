import t from 'tap';
import fc from 'fast-check';
import { classifyFailure, describeFailure, nextRetryDelayMs } from '../../daemon/mail/smtp-replies.js';

/** The relay's reading of mail server answers: what is retried, what fails for good. */

t.test('4xx and connection trouble are retried; 5xx fails; the known exceptions', async (t) => {
  const cases: Array<[string, Parameters<typeof classifyFailure>[0], 'defer' | 'fail']> = [
    ['greylisting', { code: 'EENVELOPE', responseCode: 451, response: '451 4.7.1 Greylisted, try again later' }, 'defer'],
    ['service closing', { code: 'EPROTOCOL', responseCode: 421, response: '421 4.7.0 Try again later, closing connection' }, 'defer'],
    ['no such user', { code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 The email account that you tried to reach does not exist' }, 'fail'],
    ['message refused', { code: 'EMESSAGE', responseCode: 554, response: '554 5.7.1 Message rejected as spam' }, 'fail'],
    ['mailbox full in 5.2.2', { code: 'EENVELOPE', responseCode: 552, response: '552 5.2.2 The email account that you tried to reach is over quota' }, 'defer'],
    ['too big is permanent', { code: 'EMESSAGE', responseCode: 552, response: '552 5.3.4 Message size exceeds fixed limit' }, 'fail'],
    ['wrong password', { code: 'EAUTH', responseCode: 535, response: '535 5.7.8 Username and Password not accepted' }, 'fail'],
    ['auth temporarily unavailable', { code: 'EAUTH', responseCode: 454, response: '454 4.7.0 Too many login attempts' }, 'defer'],
    ['stale pooled connection', { code: 'EPROTOCOL', responseCode: 503, response: '503 5.5.1 Bad sequence of commands' }, 'defer'],
    ['connection refused', { code: 'ESOCKET' }, 'defer'],
    ['nodemailer connection error', { code: 'ECONNECTION' }, 'defer'],
    ['timeout', { code: 'ETIMEDOUT' }, 'defer'],
    ['DNS', { code: 'EDNS' }, 'defer'],
    ['TLS', { code: 'ETLS' }, 'defer'],
    ['something new', {}, 'defer'],
  ];
  for (const [what, failure, action] of cases) t.equal(classifyFailure(failure).action, action, what);
});

t.test('property: with a reply code, 4yz is never given up on and 5yz (except the listed ones) always is', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.integer({ min: 400, max: 599 }), fc.constantFrom('EENVELOPE', 'EMESSAGE', 'EPROTOCOL'), (code, errCode) => {
    const { action } = classifyFailure({ code: errCode, responseCode: code, response: `${code} something` });
    if (code < 500) return action === 'defer';
    return code === 503 ? action === 'defer' : action === 'fail';
  })), 'the classification held for every code');
});

t.test('the retry schedule is the configured table, shortened by at most 10 % jitter, then stops', async (t) => {
  const table = [60, 300, 900];
  t.equal(nextRetryDelayMs(table, 1, () => 0), 60_000);
  t.equal(nextRetryDelayMs(table, 2, () => 1), 270_000);
  t.equal(nextRetryDelayMs(table, 3, () => 0.5), 855_000);
  t.equal(nextRetryDelayMs(table, 4), null, 'after the last delay: give up');
});

t.test('a failure is described by the server\'s words, or the error, on one line', async (t) => {
  t.equal(describeFailure({ response: '550 5.1.1 <x@example.org>:\r\n user unknown' }), '550 5.1.1 <x@example.org>: user unknown');
  t.equal(describeFailure({ code: 'ESOCKET', message: 'connect ECONNREFUSED 127.0.0.1:25' }), 'ESOCKET: connect ECONNREFUSED 127.0.0.1:25');
});
