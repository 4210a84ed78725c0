// Proves the test harness itself: the private Dovecot instance and the helpers
// in test/helpers/dovecot.ts behave the way the daemon's tests rely on.
import fs from 'node:fs'
import { createHash } from 'node:crypto'
import t from 'tap'
import { ImapFlow } from 'imapflow'
import { simpleParser } from 'mailparser'
import {
  appendMessage,
  buildMessage,
  connectedClients,
  createMailbox,
  dovecotEnv,
  imapOptions,
  mailboxSnapshot,
  withClient,
} from './helpers/dovecot.js'

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex')

const message = (subject: string) =>
  buildMessage({
    from: 'Candidate <candidate@example.org>',
    to: 'recruiter@example.com',
    subject,
    date: new Date('2024-05-06T07:08:09Z'),
    text: `Hello,\n${subject}\n`,
  })

async function eventually(fn: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return true
}

t.test('env.json describes a loopback instance', async (t) => {
  const env = dovecotEnv()
  t.equal(env.host, '127.0.0.1')
  t.not(env.port, env.tlsPort)
  t.ok(fs.existsSync(env.caFile) && fs.existsSync(env.usersFile) && fs.existsSync(env.log))
})

t.test('a created user can log in, a wrong password cannot', async (t) => {
  const account = await createMailbox('harness')
  t.match(account.address, /^harness-[0-9a-f]{12}@example\.com$/)
  t.ok(await withClient(account, async (c) => c.authenticated), 'logged in')

  const bad = new ImapFlow(imapOptions({ ...account, pass: 'wrong' }))
  const err = await bad.connect().then(() => null, (e: unknown) => e)
  t.match(err, { authenticationFailed: true }, 'a wrong password is refused as an authentication failure')
})

t.test('appended messages land in INBOX and Sent with the right UIDs', async (t) => {
  const account = await createMailbox()
  const raws = [message('first'), message('second')]
  t.same(await appendMessage(account, 'INBOX', raws[0]!), { uid: 1 })
  t.same(await appendMessage(account, 'INBOX', raws[1]!, ['\\Seen', '$Label1']), { uid: 2 })
  const sent = message('sent reply')
  t.same(await appendMessage(account, 'Sent', sent, ['\\Seen'], new Date('2024-01-01T00:00:00Z')), { uid: 1 })

  const snap = await mailboxSnapshot(account)
  t.same(Object.keys(snap), ['Archive', 'Drafts', 'INBOX', 'Sent', 'Trash'])
  t.same(snap.INBOX, [
    { uid: 1, flags: [], size: Buffer.byteLength(raws[0]!), sha256: sha256(raws[0]!) },
    { uid: 2, flags: ['$Label1', '\\Seen'], size: Buffer.byteLength(raws[1]!), sha256: sha256(raws[1]!) },
  ])
  t.same(snap.Sent, [{ uid: 1, flags: ['\\Seen'], size: Buffer.byteLength(sent), sha256: sha256(sent) }])
  t.same(snap.Trash, [])
})

t.test('mailboxSnapshot is unchanged by a read-only fetch of everything', async (t) => {
  const account = await createMailbox()
  await appendMessage(account, 'INBOX', message('unread'))
  await appendMessage(account, 'Archive', message('archived'), ['\\Flagged'])
  const before = await mailboxSnapshot(account)

  await withClient(account, async (client) => {
    for (const folder of await client.list()) {
      await client.mailboxOpen(folder.path, { readOnly: true })
      if (client.mailbox && client.mailbox.exists > 0) {
        await client.fetchAll('1:*', { source: true, envelope: true, bodyStructure: true, headers: true })
      }
    }
  })
  t.same(await mailboxSnapshot(account), before)
  t.same(before.INBOX?.[0]?.flags, [], 'still unread: the fetch used BODY.PEEK')
})

t.test('LIST advertises the special-use folders', async (t) => {
  const account = await createMailbox()
  const list = await withClient(account, (c) => c.list())
  const sent = list.find((f) => f.path === 'Sent')
  t.equal(sent?.specialUse, '\\Sent')
  t.ok(sent?.flags.has('\\Sent'), 'LIST returns the \\Sent attribute')
  t.same(
    Object.fromEntries(list.map((f) => [f.path, f.specialUse])),
    { INBOX: '\\Inbox', Sent: '\\Sent', Drafts: '\\Drafts', Trash: '\\Trash', Archive: '\\Archive' },
  )
})

t.test('TLS: IMAPS and STARTTLS verify against the generated CA', async (t) => {
  const env = dovecotEnv()
  const account = await createMailbox()
  const ca = fs.readFileSync(env.caFile)

  for (const [name, opts] of [
    ['imaps', { port: env.tlsPort, secure: true, doSTARTTLS: undefined, tls: { ca } }],
    ['starttls', { port: env.port, secure: false, doSTARTTLS: true, tls: { ca } }],
  ] as const) {
    const client = new ImapFlow(imapOptions(account, opts))
    await client.connect()
    t.ok(client.secureConnection, `${name}: connection is encrypted`)
    t.equal(client.tls && client.tls.authorized, true, `${name}: certificate verified`)
    await client.logout()
  }

  // Without the CA the self-signed certificate must be rejected.
  const untrusted = new ImapFlow(imapOptions(account, { port: env.tlsPort, secure: true, doSTARTTLS: undefined }))
  await t.rejects(untrusted.connect())
})

t.test('connectedClients counts logged-in IMAP connections', async (t) => {
  const account = await createMailbox()
  t.equal(await connectedClients(account.user), 0)
  const clients = [new ImapFlow(imapOptions(account)), new ImapFlow(imapOptions(account))]
  await Promise.all(clients.map((c) => c.connect()))
  t.ok(await eventually(async () => (await connectedClients(account.user)) === 2), 'two connections')
  await Promise.all(clients.map((c) => c.logout()))
  t.ok(await eventually(async () => (await connectedClients(account.user)) === 0), 'none after logout')
})

t.test('buildMessage produces a parseable threaded message with attachments', async (t) => {
  const pdf = Buffer.from('%PDF-1.4 fake résumé\n'.repeat(40))
  const raw = buildMessage({
    from: 'Ana <ana@example.org>',
    to: ['recruiter@example.com', 'hr@example.com'],
    cc: 'boss@example.com',
    subject: 'Re: Application – Senior Engineer',
    messageId: '<reply-1@example.org>',
    inReplyTo: '<orig-1@example.com>',
    references: ['<orig-1@example.com>'],
    text: 'Thanks!\nSee my CV attached. — Ana',
    attachments: [{ filename: 'CV résumé.pdf', contentType: 'application/pdf', content: pdf }],
  })
  t.notMatch(raw, /[^\r]\n/, 'CRLF line endings only')
  t.ok(raw.split('\r\n').every((l) => l.length <= 998), 'no over-long lines')

  const account = await createMailbox()
  const { uid } = await appendMessage(account, 'INBOX', raw)
  const fetched = await withClient(account, async (c) => {
    await c.mailboxOpen('INBOX', { readOnly: true })
    return c.fetchOne(String(uid), { source: true }, { uid: true })
  })
  t.ok(fetched && fetched.source?.equals(Buffer.from(raw)), 'Dovecot returns the exact bytes')

  const parsed = await simpleParser(raw)
  t.equal(parsed.subject, 'Re: Application – Senior Engineer')
  t.equal(parsed.messageId, '<reply-1@example.org>')
  t.equal(parsed.inReplyTo, '<orig-1@example.com>')
  t.equal(parsed.text?.trim(), 'Thanks!\nSee my CV attached. — Ana')
  t.equal(parsed.attachments.length, 1)
  t.equal(parsed.attachments[0]?.filename, 'CV résumé.pdf')
  t.ok(parsed.attachments[0]?.content.equals(pdf), 'attachment round-trips')
})
