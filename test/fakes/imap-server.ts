// A scripted fake IMAP server, for what the real Dovecot of the other tests cannot do: Gmail's
// extensions (X-GM-EXT-1: the \All folder, X-GM-MSGID, X-GM-THRID, X-GM-RAW) and the refusals
// of Gmail and Microsoft 365 (IMAP turned off, too many connections, throttling, BYE). It speaks
// just enough IMAP4rev1 for imapflow: AUTHENTICATE, LIST, EXAMINE, STATUS, UID SEARCH, UID FETCH,
// IDLE. Mailboxes are read-only to clients, as the daemon never writes.
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'

export interface FakeMessage {
  uid: number
  raw: Buffer
  internalDate: Date
  gmMsgId: bigint
  gmThrId: bigint
}

export interface FakeFolder {
  path: string
  specialUse: string | null
  uidValidity: number
  uidNext: number
  messages: FakeMessage[]
}

export interface Session {
  id: number
  user: string | null
  selected: FakeFolder | null
  idleTag: string | null
  write: (line: string | Buffer) => void
  /** Sends BYE-less close (the socket ends). */
  end: () => void
}

/** Returns reply lines to replace the normal handling of a command, or undefined to carry on. */
export type Script = (ctx: { session: Session; tag: string; command: string; args: string; server: FakeImapServer }) => string[] | 'close' | undefined

export interface FakeServerOptions {
  gmail?: boolean
  /** Answer instead of the greeting, e.g. `* BYE Server busy, try later` (the socket then closes). */
  greeting?: string
  script?: Script
}

const HEADER_END = Buffer.from('\r\n\r\n')

export class FakeImapServer {
  readonly folders: FakeFolder[]
  readonly sessions = new Set<Session>()
  /** Every connection ever accepted, and the peak of concurrent authenticated sessions per user. */
  connections = 0
  peakAuthenticated = 0
  readonly commands: Array<{ session: number; command: string; args: string; at: number }> = []
  readonly connectedAt: number[] = []
  readonly opts: FakeServerOptions
  readonly #server: net.Server
  #nextSession = 1
  #nextGmId = 1_600_000_000_000_000_000n
  port = 0

  constructor(opts: FakeServerOptions = {}) {
    this.opts = opts
    const now = 1_700_000_000
    this.folders = opts.gmail
      ? [
          { path: 'INBOX', specialUse: null, uidValidity: now, uidNext: 1, messages: [] },
          { path: '[Gmail]/All Mail', specialUse: '\\All', uidValidity: now + 1, uidNext: 1, messages: [] },
          { path: '[Gmail]/Sent Mail', specialUse: '\\Sent', uidValidity: now + 2, uidNext: 1, messages: [] },
          { path: '[Gmail]/Spam', specialUse: '\\Junk', uidValidity: now + 3, uidNext: 1, messages: [] },
        ]
      : [
          { path: 'INBOX', specialUse: null, uidValidity: now, uidNext: 1, messages: [] },
          { path: 'Sent', specialUse: '\\Sent', uidValidity: now + 2, uidNext: 1, messages: [] },
        ]
    this.#server = net.createServer((socket) => this.#accept(socket))
  }

  async start(t: Test): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r))
    this.port = (this.#server.address() as AddressInfo).port
    t.teardown(() => this.stop())
    return this
  }

  stop(): Promise<void> {
    for (const s of this.sessions) s.end()
    return new Promise((r) => this.#server.close(() => r()))
  }

  folder(path: string): FakeFolder {
    const f = this.folders.find((x) => x.path === path)
    if (!f) throw new Error(`no folder ${path}`)
    return f
  }

  authenticatedSessions(user?: string): number {
    return [...this.sessions].filter((s) => s.user !== null && (user === undefined || s.user === user)).length
  }

  /**
   * Adds a message. On Gmail it lands in All Mail too, with one X-GM-MSGID for all its copies;
   * `thread` groups messages into one X-GM-THRID (default: a thread of its own).
   */
  add(paths: string[], raw: string | Buffer, opts: { date?: Date; thread?: bigint } = {}): { gmMsgId: bigint; gmThrId: bigint } {
    const gmMsgId = this.#nextGmId++
    const gmThrId = opts.thread ?? gmMsgId
    const targets = new Set(paths)
    if (this.opts.gmail) targets.add('[Gmail]/All Mail')
    for (const p of targets) {
      const f = this.folder(p)
      const msg: FakeMessage = { uid: f.uidNext++, raw: Buffer.isBuffer(raw) ? raw : Buffer.from(raw), internalDate: opts.date ?? new Date(), gmMsgId, gmThrId }
      f.messages.push(msg)
      for (const s of this.sessions) if (s.selected === f) s.write(`* ${f.messages.length} EXISTS`)
    }
    return { gmMsgId, gmThrId }
  }

  #capabilities(): string {
    return `IMAP4rev1 UIDPLUS IDLE SASL-IR AUTH=PLAIN AUTH=XOAUTH2${this.opts.gmail ? ' X-GM-EXT-1' : ''}`
  }

  #accept(socket: net.Socket): void {
    this.connections++
    this.connectedAt.push(Date.now())
    const session: Session = {
      id: this.#nextSession++, user: null, selected: null, idleTag: null,
      write: (line) => {
        if (!socket.destroyed) socket.write(Buffer.isBuffer(line) ? line : `${line}\r\n`)
      },
      end: () => socket.destroy(),
    }
    this.sessions.add(session)
    socket.on('close', () => this.sessions.delete(session))
    socket.on('error', () => this.sessions.delete(session))
    if (this.opts.greeting) {
      session.write(this.opts.greeting)
      socket.end()
      return
    }
    session.write(`* OK [CAPABILITY ${this.#capabilities()}] fake IMAP server ready`)
    let buf = Buffer.alloc(0)
    let literalAcked = false
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const nl = buf.indexOf('\r\n')
        if (nl < 0) return
        // a literal announced at the end of the line: wait for its bytes (LITERAL+ is not offered)
        const line = buf.subarray(0, nl).toString('utf8')
        const lit = /\{(\d+)\}$/.exec(line)
        if (lit) {
          const need = Number(lit[1])
          if (!literalAcked) session.write('+ go ahead')
          literalAcked = true
          if (buf.length < nl + 2 + need + 2) return
          literalAcked = false
          const literal = buf.subarray(nl + 2, nl + 2 + need).toString('utf8')
          const rest = buf.subarray(nl + 2 + need)
          buf = Buffer.concat([Buffer.from(line.replace(/\{\d+\}$/, JSON.stringify(literal))), rest])
          continue
        }
        buf = buf.subarray(nl + 2)
        this.#handle(session, line)
      }
    })
  }

  #handle(session: Session, line: string): void {
    if (session.idleTag) {
      if (line.trim().toUpperCase() === 'DONE') {
        session.write(`${session.idleTag} OK IDLE terminated`)
        session.idleTag = null
      }
      return
    }
    const m = /^(\S+) (\S+)(?: (.*))?$/.exec(line)
    if (!m) return session.write('* BAD Invalid command')
    const [, tag, cmdRaw, args = ''] = m as unknown as [string, string, string, string]
    let command = cmdRaw.toUpperCase()
    let rest = args
    if (command === 'UID') {
      const sp = args.indexOf(' ')
      command = `UID ${args.slice(0, sp).toUpperCase()}`
      rest = args.slice(sp + 1)
    }
    this.commands.push({ session: session.id, command, args: command === 'AUTHENTICATE' || command === 'LOGIN' ? '(hidden)' : rest, at: Date.now() })
    const scripted = this.opts.script?.({ session, tag, command, args: rest, server: this })
    if (scripted === 'close') return session.end()
    if (scripted) {
      for (const l of scripted) session.write(l)
      if (scripted.some((l) => l.startsWith('* BYE'))) setImmediate(() => session.end())
      return
    }
    const ok = (text = `${command} completed`) => session.write(`${tag} OK ${text}`)
    switch (command) {
      case 'CAPABILITY':
        session.write(`* CAPABILITY ${this.#capabilities()}`)
        return ok()
      case 'NOOP':
        return ok()
      case 'LOGOUT':
        session.write('* BYE logging out')
        ok()
        return session.end()
      case 'AUTHENTICATE': {
        const [, payload = ''] = rest.split(' ')
        const decoded = Buffer.from(payload, 'base64').toString('utf8')
        session.user = /user=([^\x01]+)/.exec(decoded)?.[1] ?? decoded.split('\x00')[1] ?? 'user'
        this.peakAuthenticated = Math.max(this.peakAuthenticated, this.authenticatedSessions(session.user))
        return ok(`[CAPABILITY ${this.#capabilities()}] authenticated`)
      }
      case 'LIST':
      case 'LSUB':
        // LIST "" "": the hierarchy delimiter and root (RFC 3501 6.3.8)
        if (/""\s*""$/.test(rest)) {
          session.write(`* ${command} (\\Noselect) "/" ""`)
          return ok()
        }
        for (const f of this.folders) session.write(`* ${command} (\\HasNoChildren${f.specialUse ? ` ${f.specialUse}` : ''}) "/" "${f.path}"`)
        return ok()
      case 'EXAMINE':
      case 'SELECT': {
        const f = this.folders.find((x) => x.path === unquote(rest.split(' (')[0]!))
        if (!f) return session.write(`${tag} NO no such folder`)
        session.selected = f
        session.write('* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)')
        session.write(`* ${f.messages.length} EXISTS`)
        session.write(`* OK [UIDVALIDITY ${f.uidValidity}] UIDs valid`)
        session.write(`* OK [UIDNEXT ${f.uidNext}] predicted next UID`)
        return ok('[READ-ONLY] EXAMINE completed')
      }
      case 'STATUS': {
        const name = unquote(/^("[^"]*"|\S+)/.exec(rest)![1]!)
        const f = this.folders.find((x) => x.path === name)
        if (!f) return session.write(`${tag} NO no such folder`)
        session.write(`* STATUS "${f.path}" (MESSAGES ${f.messages.length} UIDNEXT ${f.uidNext} UIDVALIDITY ${f.uidValidity})`)
        return ok()
      }
      case 'IDLE':
        session.idleTag = tag
        return session.write('+ idling')
      case 'UID SEARCH': {
        const f = session.selected
        if (!f) return session.write(`${tag} BAD no folder selected`)
        const tokens = tokenize(rest)
        const hits = f.messages.filter((msg) => matchAll(tokens.slice(), msg, f))
        session.write(`* SEARCH${hits.map((h) => ` ${h.uid}`).join('')}`)
        return ok()
      }
      case 'UID FETCH': {
        const f = session.selected
        if (!f) return session.write(`${tag} BAD no folder selected`)
        const sp = rest.indexOf(' ')
        const uids = inSet(rest.slice(0, sp), f)
        const items = rest.slice(sp + 1)
        f.messages.forEach((msg, i) => {
          if (uids(msg.uid)) session.write(fetchResponse(i + 1, msg, items))
        })
        return ok()
      }
      default:
        return session.write(`${tag} BAD unknown command ${command}`)
    }
  }
}

function unquote(s: string): string {
  return s.startsWith('"') ? s.slice(1, -1).replace(/\\(.)/g, '$1') : s
}

function inSet(set: string, f: FakeFolder): (uid: number) => boolean {
  const max = f.messages.at(-1)?.uid ?? 0
  const ranges = set.split(',').map((part) => {
    const [a, b = a] = part.split(':') as [string, string?]
    const lo = a === '*' ? max : Number(a)
    const hi = b === '*' ? max : Number(b)
    return [Math.min(lo, hi), Math.max(lo, hi)] as const
  })
  return (uid) => ranges.some(([lo, hi]) => uid >= lo && uid <= hi)
}

function tokenize(s: string): string[] {
  const out: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|(\()|(\))|([^\s()"]+)/g
  for (let m = re.exec(s); m; m = re.exec(s)) out.push(m[1] !== undefined ? `"${m[1]}` : (m[2] ?? m[3] ?? m[4]!))
  return out
}

function headerBlock(raw: Buffer): string {
  const end = raw.indexOf(HEADER_END)
  return raw.subarray(0, end < 0 ? raw.length : end).toString('utf8').replace(/\r\n[ \t]+/g, ' ')
}

function header(raw: Buffer, name: string): string {
  const re = new RegExp(`^${name}:[ \\t]*(.*)$`, 'gim')
  return [...headerBlock(raw).matchAll(re)].map((m) => m[1]!).join(', ')
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** Gmail ignores dots in gmail.com addresses when searching. */
const gmailCanon = (s: string) => s.toLowerCase().replace(/([a-z0-9.+_-]+)@gmail\.com/g, (_m, local: string) => `${local.replace(/\./g, '')}@gmail.com`)

/** Gmail's search language, the part the daemon uses: from:, to:, cc:, rfc822msgid:, {any of}. */
function gmRaw(query: string, msg: FakeMessage): boolean {
  const term = (t: string): boolean => {
    const i = t.indexOf(':')
    const [op, v] = i < 0 ? ['text', t.toLowerCase()] : [t.slice(0, i), t.slice(i + 1).toLowerCase()]
    if (op === 'from' || op === 'to' || op === 'cc') return gmailCanon(header(msg.raw, op)).includes(gmailCanon(v))
    if (op === 'rfc822msgid') return header(msg.raw, 'message-id').toLowerCase().includes(v)
    return msg.raw.toString('utf8').toLowerCase().includes(v)
  }
  // top-level items must all match; {a b c} matches when any of a, b, c does
  const items = query.match(/\{[^}]*\}|\S+/g) ?? []
  return items.length > 0 && items.every((item) => (item.startsWith('{') ? item.slice(1, -1).split(/\s+/).filter(Boolean).some(term) : term(item)))
}

function matchAll(tokens: string[], msg: FakeMessage, f: FakeFolder): boolean {
  let ok = true
  while (tokens.length) ok = matchOne(tokens, msg, f) && ok
  return ok
}

function matchOne(tokens: string[], msg: FakeMessage, f: FakeFolder): boolean {
  const t = tokens.shift()!.toUpperCase()
  const arg = () => {
    const v = tokens.shift()!
    return v.startsWith('"') ? v.slice(1).replace(/\\(.)/g, '$1') : v
  }
  switch (t) {
    case '(': {
      let ok = true
      while (tokens.length && tokens[0] !== ')') ok = matchOne(tokens, msg, f) && ok
      tokens.shift()
      return ok
    }
    case 'ALL':
      return true
    case 'OR': {
      const a = matchOne(tokens, msg, f)
      const b = matchOne(tokens, msg, f)
      return a || b
    }
    case 'NOT':
      return !matchOne(tokens, msg, f)
    case 'UID':
      return inSet(arg(), f)(msg.uid)
    case 'SINCE':
    case 'BEFORE': {
      const [d, mon, y] = arg().split('-') as [string, string, string]
      const at = Date.UTC(Number(y), MONTHS.indexOf(mon), Number(d))
      return t === 'SINCE' ? msg.internalDate.getTime() >= at : msg.internalDate.getTime() < at
    }
    case 'FROM':
    case 'TO':
    case 'CC':
      return header(msg.raw, t.toLowerCase()).toLowerCase().includes(arg().toLowerCase())
    case 'HEADER': {
      const name = arg()
      return header(msg.raw, name).toLowerCase().includes(arg().toLowerCase())
    }
    case 'X-GM-RAW':
      return gmRaw(arg(), msg)
    case 'X-GM-THRID':
      return msg.gmThrId === BigInt(arg())
    default:
      return true
  }
}

function imapDate(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0')
  return `${p(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
}

function fetchResponse(seq: number, msg: FakeMessage, items: string): Buffer {
  const parts: Array<string | Buffer> = [`* ${seq} FETCH (UID ${msg.uid}`]
  const up = items.toUpperCase()
  if (up.includes('FLAGS')) parts.push(' FLAGS ()')
  if (up.includes('RFC822.SIZE')) parts.push(` RFC822.SIZE ${msg.raw.length}`)
  if (up.includes('INTERNALDATE')) parts.push(` INTERNALDATE "${imapDate(msg.internalDate)}"`)
  if (up.includes('X-GM-MSGID')) parts.push(` X-GM-MSGID ${msg.gmMsgId}`)
  if (up.includes('X-GM-THRID')) parts.push(` X-GM-THRID ${msg.gmThrId}`)
  const fields = /BODY\.PEEK\[HEADER\.FIELDS \(([^)]*)\)\]/i.exec(items)
  if (fields) {
    const names = fields[1]!.split(/\s+/).map((n) => n.toLowerCase())
    const block = msg.raw.subarray(0, Math.max(0, msg.raw.indexOf(HEADER_END))).toString('utf8')
    const lines = block.split(/\r\n(?![ \t])/).filter((l) => names.includes(l.slice(0, l.indexOf(':')).toLowerCase()))
    const data = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`)
    parts.push(` BODY[HEADER.FIELDS (${fields[1]})] {${data.length}}\r\n`, data)
  }
  const whole = /BODY\.PEEK\[\](?:<(\d+)\.(\d+)>)?/i.exec(items)
  if (whole) {
    const data = whole[1] !== undefined ? msg.raw.subarray(Number(whole[1]), Number(whole[1]) + Number(whole[2])) : msg.raw
    parts.push(` BODY[]${whole[1] !== undefined ? `<${whole[1]}>` : ''} {${data.length}}\r\n`, data)
  }
  parts.push(')\r\n')
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))))
}
