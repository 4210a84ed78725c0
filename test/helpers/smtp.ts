import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import nodemailer from 'nodemailer';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import { tempDir } from './stack.js';

/**
 * Real SMTP on loopback for relay tests: a sink built on smtp-server standing for the
 * recruiter's mail provider (it counts what it accepts), and nodemailer as the ATS's client.
 */

export interface SinkMessage {
  from: string;
  to: string[];
  raw: Buffer;
  /** The login the relay used at the provider. */
  authUser: string | null;
  secure: boolean;
}

export interface SinkOptions {
  /** Required login; none means AUTH is not required. */
  auth?: { user: string; pass: string };
  /** Certificate and key (PEM) for STARTTLS. */
  tls?: { key: Buffer; cert: Buffer };
  /** Reply to a RCPT TO: an [code, text] refusal, or null to accept. */
  onRcpt?: (address: string) => [number, string] | null;
  /** Reply to a finished DATA: an [code, text] refusal, or null to accept (and count). */
  onData?: (msg: SinkMessage) => [number, string] | null;
  /** While true, a finished DATA gets no answer at all (a provider that stalls); nothing is counted. */
  stall?: () => boolean;
  port?: number;
}

export interface Sink {
  port: number;
  messages: SinkMessage[];
  /** Stops listening (the provider is down); `listen` brings it back on the same port. */
  close: () => Promise<void>;
  listen: () => Promise<void>;
  /** Message-IDs of the messages accepted, as written. */
  messageIds: () => string[];
  /** Messages that reached the end of DATA while `stall` held them (never answered). */
  readonly stalled: number;
}

const errorWith = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

export async function startSink(t: Test, opts: SinkOptions = {}): Promise<Sink> {
  const messages: SinkMessage[] = [];
  let stalled = 0;
  const make = () =>
    new SMTPServer({
      logger: false,
      disableReverseLookup: true,
      authOptional: !opts.auth,
      allowInsecureAuth: !opts.tls,
      disabledCommands: opts.tls ? [] : ['STARTTLS'],
      ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
      closeTimeout: 200,
      onAuth(auth, _session, cb) {
        if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) return cb(null, { user: auth.username });
        cb(errorWith(535, '5.7.8 Username and Password not accepted'));
      },
      onRcptTo(address: SMTPServerAddress, _session, cb) {
        const refusal = opts.onRcpt?.(address.address);
        cb(refusal ? errorWith(refusal[0], refusal[1]) : null);
      },
      onData(stream, session: SMTPServerSession, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const msg: SinkMessage = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            authUser: typeof session.user === 'string' ? session.user : null,
            secure: session.secure,
          };
          if (opts.stall?.()) {
            stalled++;
            return; // never answered: the client's connection dies with it
          }
          const refusal = opts.onData?.(msg);
          if (refusal) return cb(errorWith(refusal[0], refusal[1]));
          messages.push(msg);
          cb(null, 'Ok: queued at the sink');
        });
      },
    });
  let server = make();
  server.on('error', () => {});
  let port = opts.port ?? 0;
  const listen = async () => {
    server = make();
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.server.address() as AddressInfo).port;
  };
  const close = () => new Promise<void>((resolve) => (server.server.listening ? server.close(() => resolve()) : resolve()));
  await listen();
  t.teardown(close);
  return {
    get port() {
      return port;
    },
    messages,
    close,
    listen,
    get stalled() {
      return stalled;
    },
    messageIds: () => messages.map((m) => /^message-id:\s*(.+)$/im.exec(m.raw.toString('latin1'))?.[1]?.trim() ?? ''),
  };
}

/** The ATS's SMTP client: nodemailer logging in to the daemon's submission listener. */
export function atsClient(port: number, auth: { user: string; pass: string } | null = { user: 'ats', pass: 'ats-secret-7f2c' }, extra: Record<string, unknown> = {}) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth: auth ?? undefined, logger: false, ...extra });
}

export const ATS_LOGIN = { user: 'ats', pass: 'ats-secret-7f2c' };

/** A self-signed certificate for 127.0.0.1 and localhost, made with openssl. */
export function selfSignedCert(t: Test): { key: Buffer; cert: Buffer; keyFile: string; certFile: string } {
  const dir = tempDir(t, 'mailsync-cert-');
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { keyFile, certFile, key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
}

/** A header's value from raw bytes (first occurrence, unfolded), or null. */
export function rawHeader(raw: Buffer, name: string): string | null {
  const head = raw.toString('latin1').split(/\r?\n\r?\n/)[0]!.replace(/\r?\n[ \t]/g, ' ');
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head);
  return m ? m[1]!.trim() : null;
}

/**
 * A plain SMTP dialogue, one command at a time, for what a well-behaved client library would
 * not do on its own (going on after a refused RCPT, DATA without SIZE). Returns each reply
 * (multi-line replies joined with \n), the greeting first.
 */
export async function smtpDialogue(port: number, commands: string[]): Promise<string[]> {
  const net = await import('node:net');
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('latin1');
  let buffer = '';
  const waiters: Array<() => void> = [];
  socket.on('data', (d: string) => {
    buffer += d;
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  socket.on('error', () => {});
  const readReply = async (): Promise<string> => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const m = /^((?:\d{3}-[^\r\n]*\r\n)*\d{3} [^\r\n]*)\r\n/.exec(buffer);
      if (m) {
        buffer = buffer.slice(m[0].length);
        return m[1]!.replace(/\r\n/g, '\n');
      }
      if (Date.now() > deadline || socket.destroyed) return `(no reply) ${buffer}`;
      await Promise.race([new Promise<void>((r) => waiters.push(r)), closed, new Promise((r) => setTimeout(r, 200))]);
    }
  };
  const replies = [await readReply()];
  for (const c of commands) {
    socket.write(`${c}\r\n`);
    replies.push(await readReply());
  }
  socket.end();
  return replies;
}

/** `AUTH PLAIN` argument for a login. */
export function authPlain(user: string, pass: string): string {
  return `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`, 'utf8').toString('base64')}`;
}
