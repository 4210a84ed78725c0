import dns from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import { ImapFlow } from 'imapflow';
import fs from 'node:fs';
import type { Config } from '../config/load.js';
import type { MailboxCredentials, MailboxRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import type { LoginAuth } from '../sync/oauth2-tokens.js';
import { classifyError } from '../sync/error-classifier.js';
import { resolveFolders } from '../sync/imap-folders.js';

/**
 * `mailsync doctor`: connects to a user's mail server with the stored consent, one step at a
 * time (DNS, TCP, TLS, greeting, auth, capabilities, folders, IDLE), and says in plain words
 * what worked, what failed and what to do. DNS to the greeting are probed by hand so each can
 * fail on its own; the rest uses imapflow with the same options as the account worker.
 * Mailboxes are only examined (read-only); nothing in them changes.
 */

export type StepName = 'DNS' | 'TCP' | 'TLS' | 'greeting' | 'auth' | 'capabilities' | 'folders' | 'IDLE';
export type Outcome = 'ok' | 'warn' | 'fail' | 'skipped';

export interface DoctorStep {
  step: StepName;
  outcome: Outcome;
  detail: string;
  /** What to do about it, for a failure or a warning. */
  advice?: string;
}

export interface DoctorReport {
  userId: string;
  /** The state sync last recorded for this mailbox, and its error. */
  state: MailboxRecord['state'];
  lastError: MailboxRecord['lastError'];
  server: { host: string; port: number; secure: boolean; user: string; auth: 'password' | 'oauth2' };
  steps: DoctorStep[];
  ok: boolean;
}

export interface DoctorSettings {
  allowPlaintext: boolean;
  tlsCa: Buffer | null;
  /** Longest wait for one step. */
  timeoutMs: number;
}

/**
 * Who logs in for a consent, and how: through `logins` (the daemon's, which refreshes OAuth2
 * tokens and saves them) when given, else with the stored credentials as they are.
 */
export function consentLogin(store: Store, mbx: MailboxRecord, logins?: { login(userId: string, protocol: 'imap'): Promise<{ auth: LoginAuth }> }) {
  const a = store.openSecret<MailboxCredentials>(mbx.sealedCredentials).imap;
  const who = { user: a.user, auth: 'pass' in a ? 'password' as const : 'oauth2' as const };
  const stored: LoginAuth = 'pass' in a ? { user: a.user, pass: a.pass } : { user: a.user, accessToken: a.oauth2.accessToken ?? '' };
  const login = logins ? async () => (await logins.login(mbx.userId, 'imap')).auth : async () => stored;
  return { who, login };
}

/** The sync settings the account worker would use, with a per-step timeout. */
export function doctorSettings(config: Config, timeoutSeconds: number): DoctorSettings {
  const s = config.sync;
  return { allowPlaintext: s.allowPlaintext, tlsCa: s.tlsCaFile ? fs.readFileSync(s.tlsCaFile) : null, timeoutMs: timeoutSeconds * 1000 };
}

const ALL_STEPS: StepName[] = ['DNS', 'TCP', 'TLS', 'greeting', 'auth', 'capabilities', 'folders', 'IDLE'];

/** Socket errors in words, with what to check. */
const TCP_ADVICE: Record<string, [string, string]> = {
  ECONNREFUSED: ['nothing accepts connections there', 'Check the port in the consent: IMAP over TLS is 993, IMAP with STARTTLS is 143. Is the server running?'],
  ETIMEDOUT: ['no answer', 'A firewall may drop the connection, or the host is down. Check that this machine may reach the server on that port.'],
  EHOSTUNREACH: ['the host cannot be reached', 'Check the network route from this machine to the server.'],
  ENETUNREACH: ['the network cannot be reached', 'Check the network route from this machine to the server.'],
  ECONNRESET: ['the server closed the connection at once', 'The server or a firewall refuses this machine. Check allow-lists on the server side.'],
};

class StepError extends Error {
  constructor(readonly step: StepName, message: string, readonly advice: string) {
    super(message);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(onTimeout()), ms)))]).finally(() => clearTimeout(timer));
}

/** Reads IMAP response lines from a socket, one at a time. */
class LineReader {
  #buf = '';
  #waiting: Array<(line: string | null) => void> = [];
  #ended = false;

  constructor(sock: net.Socket) {
    sock.setEncoding('latin1');
    const onData = (chunk: string) => {
      this.#buf += chunk;
      this.#flush();
    };
    sock.on('data', onData);
    sock.once('close', () => {
      this.#ended = true;
      sock.off('data', onData);
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#waiting.length) {
      const i = this.#buf.indexOf('\r\n');
      if (i < 0) {
        if (this.#ended) this.#waiting.shift()!(null);
        else return;
        continue;
      }
      const line = this.#buf.slice(0, i);
      this.#buf = this.#buf.slice(i + 2);
      this.#waiting.shift()!(line);
    }
  }

  next(): Promise<string | null> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#flush();
    });
  }

  /** Stops reading, so the socket can be handed to TLS. */
  detach(sock: net.Socket): void {
    sock.removeAllListeners('data');
  }
}

function connectTcp(address: string, port: number, ms: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: address, port });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    }, ms);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function startTls(sock: net.Socket, host: string, ca: Buffer | null, ms: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({ socket: sock, servername: net.isIP(host) ? undefined : host, ...(ca ? { ca } : {}) });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(Object.assign(new Error('the TLS handshake took too long'), { code: 'ETIMEDOUT' }));
    }, ms);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(secure);
    });
    secure.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function tlsDetail(sock: tls.TLSSocket): string {
  const cert = sock.getPeerCertificate();
  const subject = cert?.subject?.CN ?? cert?.subjectaltname ?? 'unnamed';
  return `${sock.getProtocol() ?? 'TLS'}, certificate for ${subject}${cert?.valid_to ? ` valid until ${new Date(cert.valid_to).toISOString().slice(0, 10)}` : ''}${cert?.issuer?.CN ? `, issued by ${cert.issuer.CN}` : ''}`;
}

function tlsAdvice(err: Error & { code?: string }): string {
  if (/wrong version number|packet length too long|unknown protocol/i.test(err.message)) {
    return 'The server does not speak TLS on this port: use secure: false (STARTTLS) on port 143, or port 993 with secure: true.';
  }
  return 'The server\'s certificate is not trusted. For a server with a private CA set sync.tlsCaFile to that CA; if the name does not match, use the host name the certificate is for.';
}

/** DNS, TCP, TLS and the greeting, by hand. Returns the steps; throws StepError at the first failure. */
async function probe(mbx: MailboxRecord, s: DoctorSettings, add: (step: DoctorStep) => void): Promise<void> {
  const { host, port, secure } = mbx.imap;
  let address = host.replace(/^\[|\]$/g, '');
  if (net.isIP(address)) add({ step: 'DNS', outcome: 'ok', detail: `${address} is an IP address; nothing to look up` });
  else {
    try {
      const found = await withTimeout(dns.lookup(host, { all: true }), s.timeoutMs, () => Object.assign(new Error('timed out'), { code: 'ETIMEOUT' }));
      address = found[0]!.address;
      add({ step: 'DNS', outcome: 'ok', detail: `${host} resolves to ${found.map((a) => a.address).join(', ')}` });
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'error';
      throw new StepError('DNS', `the host name ${host} does not resolve (${code})`, 'Check the IMAP host in the consent for a typo, and this machine\'s DNS settings. The user grants access again with the right host.');
    }
  }
  let sock: net.Socket;
  const started = Date.now();
  try {
    sock = await connectTcp(address, port, s.timeoutMs);
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'error';
    const [words, advice] = TCP_ADVICE[code] ?? [(err as Error).message, 'Check the host and port in the consent.'];
    throw new StepError('TCP', `cannot connect to ${address}:${port}: ${words} (${code}${code === 'ETIMEDOUT' ? ` after ${Math.round(s.timeoutMs / 1000)} s` : ''})`, advice);
  }
  add({ step: 'TCP', outcome: 'ok', detail: `connected to ${address}:${port} in ${Date.now() - started} ms` });
  try {
    if (secure) {
      try {
        sock = await startTls(sock, host, s.tlsCa, s.timeoutMs);
      } catch (err) {
        throw new StepError('TLS', `the TLS handshake failed: ${(err as Error).message}`, tlsAdvice(err as Error));
      }
      add({ step: 'TLS', outcome: 'ok', detail: tlsDetail(sock as tls.TLSSocket) });
    }
    let reader = new LineReader(sock);
    const greeting = await withTimeout(reader.next(), s.timeoutMs, () => new StepError('greeting', `connected, but no greeting came within ${Math.round(s.timeoutMs / 1000)} s`, 'This may not be an IMAP server, or TLS is expected: check the port and the secure setting.'));
    if (greeting === null || !/^\* (OK|PREAUTH)\b/i.test(greeting)) {
      throw new StepError('greeting', greeting === null ? 'the server closed the connection without a greeting' : `the server greeted with "${greeting.slice(0, 200)}"`, 'The server refuses connections from here, or this is not an IMAP server.');
    }
    add({ step: 'greeting', outcome: 'ok', detail: greeting.slice(0, 200) });
    if (!secure) {
      sock.write('d1 CAPABILITY\r\n');
      let caps = '';
      for (let line = await reader.next(); line !== null && !line.startsWith('d1 '); line = await reader.next()) {
        if (/^\* CAPABILITY /i.test(line)) caps = line;
      }
      if (/\bSTARTTLS\b/i.test(caps)) {
        sock.write('d2 STARTTLS\r\n');
        const answer = await reader.next();
        if (!answer || !/^d2 OK/i.test(answer)) throw new StepError('TLS', `STARTTLS was refused: ${answer ?? 'connection closed'}`, 'The server announces STARTTLS but refuses it: check its TLS setup, or use port 993 with secure: true.');
        reader.detach(sock);
        try {
          sock = await startTls(sock, host, s.tlsCa, s.timeoutMs);
        } catch (err) {
          throw new StepError('TLS', `the TLS handshake after STARTTLS failed: ${(err as Error).message}`, tlsAdvice(err as Error));
        }
        add({ step: 'TLS', outcome: 'ok', detail: `STARTTLS: ${tlsDetail(sock as tls.TLSSocket)}` });
        reader = new LineReader(sock);
      } else if (s.allowPlaintext) {
        add({ step: 'TLS', outcome: 'warn', detail: 'the server offers no STARTTLS: the password travels in clear (allowed by sync.allowPlaintext)', advice: 'Only for a server on loopback or a trusted network. Prefer port 993 with secure: true.' });
      } else {
        throw new StepError('TLS', 'the server offers no STARTTLS, and mailsync does not send a password in clear (sync.allowPlaintext is false)', 'Use port 993 with secure: true, or turn on STARTTLS on the server.');
      }
    }
  } finally {
    sock.destroy();
  }
}

/** Login, capabilities, folders and IDLE, with imapflow as the account worker uses it. */
async function session(mbx: MailboxRecord, login: () => Promise<LoginAuth>, s: DoctorSettings, add: (step: DoctorStep) => void): Promise<void> {
  let a: LoginAuth;
  try {
    a = await login();
  } catch (err) {
    // an OAuth2 grant that cannot be refreshed: the message says what to do
    throw new StepError('auth', `no usable login: ${(err as Error).message}`, 'The user grants access again.');
  }
  const client = new ImapFlow({
    host: mbx.imap.host, port: mbx.imap.port, secure: mbx.imap.secure,
    doSTARTTLS: mbx.imap.secure ? undefined : s.allowPlaintext ? undefined : true,
    auth: a,
    logger: false, disableAutoIdle: true, clientInfo: { name: 'mailsync doctor' },
    connectionTimeout: s.timeoutMs, greetingTimeout: s.timeoutMs, socketTimeout: s.timeoutMs * 3,
    tls: s.tlsCa ? { ca: s.tlsCa } : {},
  });
  client.on('error', () => {});
  try {
    try {
      await client.connect();
    } catch (err) {
      const c = classifyError(err);
      const text = (err as { responseText?: string }).responseText ?? (err as Error).message;
      throw new StepError('auth', `${c.code}: the server answered "${text.slice(0, 200)}"`, c.message);
    }
    add({ step: 'auth', outcome: 'ok', detail: `logged in as ${a.user} (${'pass' in a ? 'password' : 'OAuth2'})` });
    const caps = [...client.capabilities.keys()];
    const notable = ['IDLE', 'CONDSTORE', 'QRESYNC', 'UIDPLUS', 'SPECIAL-USE', 'X-GM-EXT-1'].filter((c) => caps.includes(c));
    if (caps.includes('IDLE')) add({ step: 'capabilities', outcome: 'ok', detail: notable.join(', ') });
    else add({ step: 'capabilities', outcome: 'warn', detail: `no IDLE (${notable.join(', ') || 'none of IDLE, CONDSTORE, UIDPLUS'})`, advice: 'Without IDLE new mail is found by polling, with a delay of up to sync.sentPollSeconds.' });
    let folders;
    try {
      folders = await resolveFolders(client);
    } catch (err) {
      throw new StepError('folders', `listing the folders failed: ${(err as Error).message}`, 'The account may be limited by its provider; check it in a mail client.');
    }
    const counts: string[] = [];
    for (const f of folders) {
      const st = await client.status(f.path, { messages: true, uidNext: true });
      counts.push(`${f.path} (${st ? st.messages ?? '?' : '?'} messages)`);
    }
    const sent = folders.find((f) => f.role === 'sent');
    add(sent
      ? { step: 'folders', outcome: 'ok', detail: counts.join(', ') }
      : { step: 'folders', outcome: 'warn', detail: `${counts.join(', ')}; no Sent folder found`, advice: 'Replies still arrive through INBOX, but threads the user started outside the ATS are not seen. Mark the sent folder as \\Sent on the server.' });
    await client.mailboxOpen('INBOX', { readOnly: true });
    const idle = client.idle().catch(() => undefined);
    const deadline = Date.now() + s.timeoutMs;
    while (!client.idling && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const accepted = client.idling;
    await client.noop(); // ends IDLE
    await idle;
    if (accepted) add({ step: 'IDLE', outcome: 'ok', detail: 'the server accepted IDLE on INBOX: new mail is pushed at once' });
    else if (!caps.includes('IDLE')) add({ step: 'IDLE', outcome: 'warn', detail: 'not offered; new mail is found by polling', advice: 'Polling works, only slower.' });
    else throw new StepError('IDLE', 'the server announces IDLE but did not enter it', 'Some proxies or firewalls break IDLE; sync falls back to slower checks.');
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/**
 * Checks a mailbox. `login` gives the IMAP login of the consent (refreshing an OAuth2 token
 * when it has expired); `user` and `auth` describe it in the report.
 */
export async function runDoctor(userId: string, mbx: MailboxRecord, who: { user: string; auth: 'password' | 'oauth2' }, login: () => Promise<LoginAuth>, settings: DoctorSettings): Promise<DoctorReport> {
  const steps: DoctorStep[] = [];
  const add = (s: DoctorStep) => steps.push(s);
  try {
    await probe(mbx, settings, add);
    await session(mbx, login, settings, add);
  } catch (err) {
    if (!(err instanceof StepError)) throw err;
    add({ step: err.step, outcome: 'fail', detail: err.message, advice: err.advice });
  }
  for (const name of ALL_STEPS) if (!steps.some((s) => s.step === name)) add({ step: name, outcome: 'skipped', detail: 'not reached' });
  return {
    userId,
    state: mbx.state,
    lastError: mbx.lastError,
    server: { host: mbx.imap.host, port: mbx.imap.port, secure: mbx.imap.secure, ...who },
    steps,
    ok: !steps.some((s) => s.outcome === 'fail'),
  };
}
