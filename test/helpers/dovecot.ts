// Helpers for tests that talk to the real Dovecot started by
// test/setup/start-servers.ts (scripts/dovecot.sh --dir .run/test-dovecot).
//
// Every test creates its own users, so test files can run in parallel against
// one shared server without seeing each other's mail.
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ImapFlow, type ImapFlowOptions } from 'imapflow'

export interface DovecotEnv {
  host: string
  port: number
  tlsPort: number
  dir: string
  caFile: string
  usersFile: string
  log: string
}

export interface Account {
  user: string
  pass: string
  address: string
  /** Set for accounts of a private instance (startPrivateDovecot); else the shared test instance. */
  server?: DovecotEnv
}

export interface SnapshotMessage {
  uid: number
  flags: string[]
  size: number
  sha256: string
}

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const envFile = path.join(repoRoot, '.run/test-dovecot/env.json')

/** Connection details of the running test instance. */
export function dovecotEnv(): DovecotEnv {
  // Not cached: reading it each time keeps a restarted instance usable.
  let text: string
  try {
    text = fs.readFileSync(envFile, 'utf8')
  } catch {
    throw new Error(
      `Test Dovecot is not running (${envFile} is missing). Run the tests with ` +
        '`npm test` / `npx tap`, or start it with `scripts/dovecot.sh start --dir .run/test-dovecot`.',
    )
  }
  return JSON.parse(text) as DovecotEnv
}

/** ImapFlow options for a plain (non-TLS) loopback connection as `account`. */
export function imapOptions(account: Account, extra: Partial<ImapFlowOptions> = {}): ImapFlowOptions {
  const env = account.server ?? dovecotEnv()
  return {
    host: env.host,
    port: env.port,
    secure: false,
    doSTARTTLS: false,
    logger: false,
    auth: { user: account.user, pass: account.pass },
    ...extra,
  }
}

/** Runs `fn` with a logged-in client and always disconnects afterwards. */
export async function withClient<T>(account: Account, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
  const client = new ImapFlow(imapOptions(account))
  // A socket error after connect() would otherwise be an unhandled 'error'
  // event that kills the test process; the pending command rejects anyway.
  client.on('error', () => {})
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.logout().catch(() => client.close())
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Creates a fresh Dovecot user and resolves once it can log in. */
export async function createMailbox(prefix = 'user', pass = randomBytes(12).toString('hex'), server?: DovecotEnv): Promise<Account> {
  if (!/^[A-Za-z0-9._-]+$/.test(prefix)) throw new Error(`invalid mailbox prefix: ${prefix}`)
  if (!/^[^:\r\n]+$/.test(pass)) throw new Error('a password must be non-empty without ":" or newlines')
  const user = `${prefix}-${randomBytes(6).toString('hex')}`
  const account: Account = { user, pass, address: `${user}@example.com`, ...(server ? { server } : {}) }
  // One O_APPEND write per line, so parallel test processes never interleave.
  fs.appendFileSync((server ?? dovecotEnv()).usersFile, `${user}:{PLAIN}${account.pass}::::::\n`)
  // Dovecot re-stats the passwd-file at most once per wall-clock second, so a
  // login in the second of the append may not see the new line (and a failed
  // login costs auth_failure_delay = 2s). Waiting for the next second is cheaper.
  await sleep(1020 - (Date.now() % 1000))

  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      await withClient(account, async () => {})
      return account
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`new user ${user} cannot log in: ${String(err)}`, { cause: err })
      await sleep(200)
    }
  }
}

/** APPENDs a raw message to `folder` and returns its UID (UIDPLUS). */
export async function appendMessage(
  account: Account,
  folder: string,
  raw: string | Buffer,
  flags: string[] = [],
  date?: Date,
): Promise<{ uid: number }> {
  return withClient(account, async (client) => {
    const res = await client.append(folder, raw, flags, date)
    if (!res || typeof res.uid !== 'number') throw new Error(`APPEND to ${folder} returned no UID`)
    return { uid: res.uid }
  })
}

/**
 * Every message of every folder (uid, flags, size, sha256 of the full source),
 * read through EXAMINE + BODY.PEEK so taking a snapshot changes nothing.
 * Compare two snapshots to prove that code under test left a mailbox alone.
 */
export async function mailboxSnapshot(account: Account): Promise<Record<string, SnapshotMessage[]>> {
  return withClient(account, async (client) => {
    const snapshot: Record<string, SnapshotMessage[]> = {}
    const folders = (await client.list()).filter((f) => !f.flags.has('\\Noselect'))
    for (const folder of folders.map((f) => f.path).sort()) {
      const box = await client.mailboxOpen(folder, { readOnly: true })
      const messages: SnapshotMessage[] = []
      if (box.exists > 0) {
        for await (const msg of client.fetch('1:*', { uid: true, flags: true, size: true, source: true })) {
          messages.push({
            uid: msg.uid,
            // \Recent is per-session state (whoever SELECTs first claims it),
            // not a change to the mailbox, so it would only add noise.
            flags: [...(msg.flags ?? [])].filter((f) => f !== '\\Recent').sort(),
            size: msg.size ?? -1,
            sha256: createHash('sha256').update(msg.source ?? Buffer.alloc(0)).digest('hex'),
          })
        }
      }
      snapshot[folder] = messages.sort((a, b) => a.uid - b.uid)
    }
    return snapshot
  })
}

/**
 * A Dovecot of the test's own, in a fresh directory, stopped when the test ends. With
 * `oauth2Url` it also accepts XOAUTH2 logins, checked by Dovecot's oauth2 passdb against that
 * introspection endpoint (which the test runs).
 */
export async function startPrivateDovecot(t: { teardown: (fn: () => unknown) => void }, opts: { oauth2Url?: string } = {}): Promise<DovecotEnv> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailsync-dovecot-'))
  // the mail user must be able to reach the mail tree inside it
  fs.chmodSync(dir, 0o755)
  const args = [path.join(repoRoot, 'scripts/dovecot.sh'), 'start', '--dir', dir, ...(opts.oauth2Url ? ['--oauth2-url', opts.oauth2Url] : [])]
  // stdout ignored: the daemonised master would otherwise hold the pipe open
  execFileSync('bash', args, { stdio: ['ignore', 'ignore', 'inherit'] })
  t.teardown(() => {
    execFileSync('bash', [path.join(repoRoot, 'scripts/dovecot.sh'), 'stop', '--dir', dir], { stdio: ['ignore', 'ignore', 'inherit'] })
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return JSON.parse(fs.readFileSync(path.join(dir, 'env.json'), 'utf8')) as DovecotEnv
}

/**
 * Ends every IMAP session of `user` from the server side (as Gmail does about hourly).
 * Returns false when the user had no session to end.
 */
export function kickUser(user: string, env: DovecotEnv = dovecotEnv()): boolean {
  try {
    execFileSync('doveadm', ['-c', path.join(env.dir, 'dovecot.conf'), 'kick', user], { stdio: 'ignore' })
    return true
  } catch (err) {
    // 68 (EX_NOUSER): nobody of that name was connected
    if ((err as { status?: number }).status === 68) return false
    throw err
  }
}

/** Number of logged-in IMAP connections of `user`, as Dovecot's anvil sees them. */
export async function connectedClients(user: string, env: DovecotEnv = dovecotEnv()): Promise<number> {
  const conf = path.join(env.dir, 'dovecot.conf')
  // Output: a header line, then "username proto pid ip" per connection.
  const out = execFileSync('doveadm', ['-c', conf, 'who', '-1', user], { encoding: 'utf8' })
  return out
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter(([name, proto]) => name === user && proto === 'imap').length
}

export interface MessageSpec {
  from: string
  to: string | string[]
  cc?: string | string[]
  subject: string
  messageId?: string
  inReplyTo?: string
  references?: string | string[]
  date?: Date
  text: string
  attachments?: Array<{ filename: string; contentType: string; content: Buffer }>
}

/**
 * An RFC 5322 message with CRLF line endings: text/plain, or multipart/mixed
 * with base64 attachments. Address values are used verbatim. A missing
 * Message-ID gets a random one; a missing Date is "now".
 */
export function buildMessage(spec: MessageSpec): string {
  const list = (v: string | string[]) => (Array.isArray(v) ? v.join(', ') : v)
  const headers: string[] = [
    `From: ${spec.from}`,
    `To: ${list(spec.to)}`,
    ...(spec.cc ? [`Cc: ${list(spec.cc)}`] : []),
    `Subject: ${encodeWord(spec.subject)}`,
    `Date: ${rfc5322Date(spec.date ?? new Date())}`,
    `Message-ID: ${spec.messageId ?? `<${randomBytes(8).toString('hex')}@example.com>`}`,
    ...(spec.inReplyTo ? [`In-Reply-To: ${spec.inReplyTo}`] : []),
    ...(spec.references ? [`References: ${Array.isArray(spec.references) ? spec.references.join(' ') : spec.references}`] : []),
    'MIME-Version: 1.0',
  ]
  const text = textPart(spec.text)
  if (!spec.attachments?.length) return [...headers, ...text.headers, '', text.body].join('\r\n')

  const boundary = `=_mailsync_${randomBytes(8).toString('hex')}`
  const parts = [
    [...text.headers, '', text.body].join('\r\n'),
    ...spec.attachments.map((a) =>
      [
        `Content-Type: ${a.contentType}; ${param('name', a.filename)}`,
        `Content-Disposition: attachment; ${param('filename', a.filename)}`,
        'Content-Transfer-Encoding: base64',
        '',
        base64Lines(a.content),
      ].join('\r\n'),
    ),
  ]
  return [
    ...headers,
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    ...parts.map((p) => `--${boundary}\r\n${p}`),
    `--${boundary}--`,
    '',
  ].join('\r\n')
}

const isPlainAscii = (s: string) => /^[\x20-\x7e]*$/.test(s)

function encodeWord(s: string): string {
  return isPlainAscii(s) ? s : `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`
}

// RFC 2231 for anything that cannot go into a quoted string as-is.
function param(key: string, value: string): string {
  if (isPlainAscii(value) && !/["\\]/.test(value)) return `${key}="${value}"`
  const pct = encodeURIComponent(value).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  return `${key}*=UTF-8''${pct}`
}

function textPart(text: string): { headers: string[]; body: string } {
  const body = text.replace(/\r?\n/g, '\r\n')
  // 7bit only when it is legal (ASCII, lines <= 998 octets); else base64.
  const sevenBit = /^[\x00-\x7f]*$/.test(body) && body.split('\r\n').every((l) => l.length <= 998)
  return {
    headers: ['Content-Type: text/plain; charset=utf-8', `Content-Transfer-Encoding: ${sevenBit ? '7bit' : 'base64'}`],
    body: sevenBit ? `${body}\r\n` : base64Lines(Buffer.from(text, 'utf8')),
  }
}

function base64Lines(buf: Buffer): string {
  return `${(buf.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')}\r\n`
}

function rfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const p = (n: number) => String(n).padStart(2, '0')
  return (
    `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  )
}

/**
 * Writes messages straight into an account's Maildir folder (INBOX or e.g. Sent), which is far
 * faster than APPENDing thousands; Dovecot indexes them on the next access. File times become
 * the messages' INTERNALDATE.
 */
export async function seedMaildir(account: Account, folder: string, messages: Array<{ raw: string | Buffer; date?: Date }>): Promise<void> {
  // Dovecot creates the Maildir (and its auto-created folders) on first use
  await withClient(account, async (client) => {
    await client.list()
    await client.status('INBOX', { messages: true })
  })
  const env = account.server ?? dovecotEnv()
  const root = path.join(env.dir, 'mail', account.user, 'Maildir')
  const dir = folder === 'INBOX' ? root : path.join(root, `.${folder}`)
  const owner = fs.statSync(root)
  for (const sub of ['cur', 'new', 'tmp']) {
    fs.mkdirSync(path.join(dir, sub), { recursive: true })
    fs.chownSync(path.join(dir, sub), owner.uid, owner.gid)
  }
  fs.chownSync(dir, owner.uid, owner.gid)
  const stamp = Math.floor(Date.now() / 1000)
  messages.forEach((m, i) => {
    const raw = Buffer.isBuffer(m.raw) ? m.raw : Buffer.from(m.raw)
    const file = path.join(dir, 'cur', `${stamp}.M${i}P${process.pid}.seed,S=${raw.length}:2,S`)
    fs.writeFileSync(file, raw)
    fs.chownSync(file, owner.uid, owner.gid)
    if (m.date) fs.utimesSync(file, m.date, m.date)
  })
}
