import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerOptions } from 'smtp-server';
import { MailsyncError } from '../errors.js';

/**
 * What the submission and intake listeners share: TLS from config, listening on a port (0
 * picks one), reading a message with a size cap, and a stop that refuses new connections
 * and lets the ones in a transaction finish (bounded).
 */

export interface ListenerTls {
  key: Buffer;
  cert: Buffer;
}

export function loadListenerTls(certFile: string, keyFile: string): ListenerTls | null {
  if (!certFile) return null;
  try {
    return { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
  } catch (err) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', `smtp.tls: cannot read the certificate or key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** smtp-server options every listener uses; STARTTLS only with our own certificate. */
export function baseOptions(tls: ListenerTls | null, banner: string): SMTPServerOptions {
  return {
    banner,
    logger: false,
    disableReverseLookup: true,
    // a listener without a certificate offers no STARTTLS at all, rather than smtp-server's
    // built-in certificate whose private key is public
    disabledCommands: tls ? [] : ['STARTTLS'],
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    // How long stop() lets a client finish its transaction before the socket is cut.
    closeTimeout: 5_000,
    socketTimeout: 120_000,
  };
}

/** An smtp-error for a handler callback: the client sees `code text`. */
export function smtpError(responseCode: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * Reads a DATA stream into memory, keeping at most `limit` bytes (smtp-server answers 552 for
 * more, with `rejectOversized`); the rest is drained so the session can go on.
 */
export function readMessage(stream: SMTPServerDataStream, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(stream.sizeExceeded || size > limit ? null : Buffer.concat(chunks, size)));
  });
}

export class SmtpListener {
  readonly #server: SMTPServer;
  readonly #log: Logger;
  readonly #name: string;
  #port = 0;
  #stopping: Promise<void> | null = null;

  constructor(name: string, options: SMTPServerOptions, log: Logger) {
    this.#name = name;
    this.#log = log;
    this.#server = new SMTPServer(options);
    // a client's broken connection must never take the daemon down
    this.#server.on('error', (err: Error) => this.#log.debug({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, `${name} connection error`));
  }

  get port(): number {
    return this.#port;
  }

  async start(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        const code = (err as NodeJS.ErrnoException).code;
        const option = `smtp.${this.#name}.port`;
        reject(new MailsyncError('MAILSYNC_ERR_CONFIG', code === 'EADDRINUSE'
          ? `${option}: ${host}:${port} is already in use by another program; set ${option} to a free port, or 0 to turn the ${this.#name} listener off`
          : `${option}: the ${this.#name} listener cannot listen on ${host}:${port} (${code ?? err.message})`, { cause: err }));
      };
      this.#server.server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.server.off('error', onError);
        resolve();
      });
    });
    this.#port = (this.#server.server.address() as AddressInfo).port;
    return this.#port;
  }

  /** Refuses new connections; clients in a transaction get closeTimeout to finish. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      if (!this.#server.server.listening) return resolve();
      this.#server.close(() => resolve());
    });
    return this.#stopping;
  }
}
