/**
 * The configuration schema: every option with its doc, default and format. The environment
 * variable of each option is derived from its path (`api.port` → `MAILSYNC_API_PORT`), so the
 * contract of API.md holds for every key without a hand-written list that could drift.
 */

export interface OptionSpec {
  doc: string;
  format: unknown;
  default: unknown;
  sensitive?: boolean;
  nullable?: boolean;
}

export type SchemaTree = { [key: string]: OptionSpec | SchemaTree };

export const schema = {
  api: {
    host: { doc: 'Address the REST API listens on. Keep it on loopback or a private network; the ATS is its only client.', format: String, default: '127.0.0.1' },
    port: { doc: 'Port of the REST API (0 picks a free port, which is then logged).', format: 'port', default: 8025 },
    tokens: {
      doc: 'Bearer tokens accepted on /v1 (Authorization: Bearer <token>). Give each ATS deployment its own and rotate by listing old and new together.',
      format: 'nonempty-string-list', default: ['change-me'], sensitive: true,
    },
    bodyLimitBytes: { doc: 'Largest request body the API accepts; larger ones get 413 payload_too_large.', format: 'nat', default: 1_048_576 },
    metricsToken: { doc: 'When set, GET /metrics requires this bearer token; empty leaves /metrics open (it holds no mail content).', format: String, default: '', sensitive: true },
    authFailures: {
      maxFailures: {
        doc: 'Failed authentications (missing or wrong bearer token on /v1 or /metrics) from one remote address within windowSeconds after which that address gets 429 rate_limited, with Retry-After, for windowSeconds — also with a correct token. Successful requests are not counted. 0 turns the limit off.',
        format: 'nat', default: 10,
      },
      windowSeconds: { doc: 'The window in which failures are counted, and how long an address that reached maxFailures is refused.', format: 'nat', default: 60 },
    },
    trustProxy: {
      doc: 'Take the client address from X-Forwarded-For (set it when a reverse proxy you run sits in front of the API). Off: the address is the TCP peer, so behind a proxy every client shares the proxy\'s address and its auth failure limit.',
      format: 'boolean', default: false,
    },
  },
  store: {
    path: { doc: 'Directory of the LevelDB store. Back it up; it holds the threads, the sync state and the outbox.', format: String, default: './data' },
    keyFile: {
      doc: 'File holding the keys that encrypt secrets (and content) at rest with AES-256-GCM: one line of 64 hex characters (one key), or the keyring that `mailsync keys rotate` writes (keys with ids, one current). Created with mode 0600 when missing, never for an existing store. Keep it outside backups of the store.',
      format: String, default: './data/master.key',
    },
    key: { doc: 'The encryption key itself (64 hex characters), instead of keyFile; wins over keyFile when set. Meant for secret managers that inject env vars. A key given here cannot be rotated by `mailsync keys rotate`.', format: String, default: '', sensitive: true },
    encryptContent: { doc: 'Encrypt stored message content (parsed text, html and original bytes) too, not only credentials.', format: 'boolean', default: true },
    maxTextBytes: { doc: 'Longest text and HTML body kept per message (each, in characters); longer bodies are cut.', format: 'nat', default: 1_048_576 },
    maxRawBytes: {
      doc: 'Largest original message (in bytes) kept for /raw and attachment downloads. Larger messages keep their text and attachment list; their bytes are not stored.',
      format: 'nat', default: 26_214_400,
    },
  },
  ats: {
    messageIdDomains: {
      doc: 'Message-IDs whose domain is one of these (or a subdomain of one) are ATS-originated: threads containing them are tracked. The relay stamps its Message-IDs with the first one.',
      format: 'domain-list', default: ['ats.example.net'],
    },
  },
  webhooks: {
    url: { doc: 'Where events are POSTed. Empty: no push; the ATS pulls GET /v1/events.', format: 'url-or-empty', default: '' },
    secret: { doc: 'HMAC-SHA256 key for X-Mailsync-Signature. Required when url is set.', format: String, default: '', sensitive: true },
    timeoutMs: { doc: 'How long one delivery may take before it counts as failed and is retried.', format: 'nat', default: 10_000 },
    concurrency: { doc: 'Deliveries in flight at once. Events of one thread (or one mailbox) are still delivered in order, one at a time.', format: 'nat', default: 8 },
    retry: {
      attempts: { doc: 'Attempts per event before it is marked failed (and stays listed for redelivery).', format: 'nat', default: 12 },
      initialDelayMs: { doc: 'Delay before the first retry; each retry doubles it.', format: 'nat', default: 1_000 },
      maxDelayMs: { doc: 'Longest delay between two attempts.', format: 'nat', default: 3_600_000 },
      jitter: { doc: 'Random share (0..1) by which each delay is shortened, so retries of many events do not arrive together.', format: 'ratio', default: 0.2 },
    },
  },
  sync: {
    initialWindowDays: { doc: 'How far back the first sync of a mailbox looks when the consent gives no syncSince.', format: 'nat', default: 90 },
    allowPlaintext: {
      doc: 'Allow IMAP without TLS when the server offers no STARTTLS. Only for a server on loopback or a trusted network; passwords travel in clear.',
      format: 'boolean', default: false,
    },
    tlsCaFile: { doc: 'Extra CA certificate (PEM) trusted for IMAP TLS, for servers with a private CA. Empty: the system CAs.', format: String, default: '' },
    sentPollSeconds: { doc: 'How often the Sent folder is checked (STATUS) while INBOX is watched with IDLE.', format: 'nat', default: 60 },
    idleRefreshSeconds: {
      doc: 'IDLE is re-issued after this long. Servers may drop IDLE after 30 minutes (RFC 2177) and NAT boxes drop quiet sockets sooner; the re-issue also proves the socket alive.',
      format: 'nat', default: 300,
    },
    connectTimeoutSeconds: { doc: 'Longest wait for TCP, TLS, greeting and login together.', format: 'nat', default: 30 },
    socketTimeoutSeconds: { doc: 'A socket silent for this long (no answer to our commands or probes) is treated as dead and replaced.', format: 'nat', default: 360 },
    probeTimeoutSeconds: {
      doc: 'When IDLE ends after idleRefreshSeconds without news, a NOOP must be answered within this long, or the connection counts as silently dropped (a NAT box or firewall forgot it) and is replaced.',
      format: 'nat', default: 30,
    },
    fetchBatchSize: { doc: 'Catch-up: UID ranges (a:b) per FETCH of header fields, which stream in, so a folder without gaps is one FETCH; bounds command lines. Imports: UIDs per FETCH.', format: 'nat', default: 500 },
    backoff: {
      minMs: { doc: 'First delay before reconnecting after a drop.', format: 'nat', default: 1_000 },
      maxMs: { doc: 'Longest delay between reconnect attempts.', format: 'nat', default: 300_000 },
      resetAfterSeconds: { doc: 'A connection must stay up this long before the backoff starts again from minMs, so a server that accepts and drops does not get hammered.', format: 'nat', default: 120 },
    },
    parseTimeoutMs: { doc: 'Longest time spent parsing one message; a message that takes longer is quarantined with a reason.', format: 'nat', default: 30_000 },
    maxMessageBytes: {
      doc: 'Largest message (by the size the server reports, RFC822.SIZE) that is fetched and parsed. A larger one is stored with its header fields only and listed in the quarantine. Messages above store.maxRawBytes are parsed while they stream in, never held whole in memory.',
      format: 'nat', default: 104_857_600,
    },
    startConcurrency: {
      doc: 'Mailboxes that connect and catch up at once (at start-up, after the mail server was away); the others wait their turn. With thousands of mailboxes, starting all together costs far more memory and time than a few dozen at a time.',
      format: 'nat', default: 20,
    },
    maxConnectionsPerUser: {
      doc: 'IMAP connections mailsync opens at once to one mailbox. Providers count them together with the user\'s phone and desktop (Gmail allows about 15); imports and links share the sync connection.',
      format: 'nat', default: 1,
    },
  },
  oauth2: {
    refreshMarginSeconds: { doc: 'An access token is refreshed this long before it expires, so no login starts with a token about to lapse.', format: 'nat', default: 60 },
    timeoutMs: { doc: 'Longest wait for a token endpoint to answer a refresh.', format: 'nat', default: 15_000 },
    google: {
      tokenUrl: { doc: 'Token endpoint of Google (refresh grant) for accounts consented with provider "google".', format: 'url-or-empty', default: 'https://oauth2.googleapis.com/token' },
      clientId: { doc: 'OAuth client id of the application the recruiters consented to at Google.', format: String, default: '' },
      clientSecret: { doc: 'OAuth client secret of that application.', format: String, default: '', sensitive: true },
    },
    microsoft: {
      tokenUrl: { doc: 'Token endpoint of Microsoft identity (refresh grant) for provider "microsoft"; put the tenant id in place of "common" to pin one tenant.', format: 'url-or-empty', default: 'https://login.microsoftonline.com/common/oauth2/v2.0/token' },
      clientId: { doc: 'Application (client) id registered in Microsoft Entra.', format: String, default: '' },
      clientSecret: { doc: 'Client secret of that application.', format: String, default: '', sensitive: true },
      scope: { doc: 'Scopes asked for on refresh (Microsoft issues a token for these).', format: String, default: 'https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access' },
    },
    custom: {
      tokenUrl: { doc: 'Token endpoint for provider "custom" (any OAuth2 server with a refresh grant); empty: such consents cannot refresh.', format: 'url-or-empty', default: '' },
      clientId: { doc: 'Client id at the custom provider.', format: String, default: '' },
      clientSecret: { doc: 'Client secret at the custom provider.', format: String, default: '', sensitive: true },
    },
  },
  addresses: {
    domainRules: {
      doc: 'Provider rules for matching addresses to candidates and users, one entry per domain: {domain, ignoreDots, tagSeparator, canonicalDomain}. Case never matters anywhere. The default covers consumer Gmail (dots and +tags ignored, googlemail.com is gmail.com); setting this option replaces the whole list, so keep those entries to keep their rules. As an env var: JSON.',
      format: 'domain-rules',
      default: [
        { domain: 'gmail.com', ignoreDots: true, tagSeparator: '+' },
        { domain: 'googlemail.com', ignoreDots: true, tagSeparator: '+', canonicalDomain: 'gmail.com' },
      ] as Array<{ domain: string; ignoreDots: boolean; tagSeparator: string | null; canonicalDomain?: string }>,
    },
  },
  smtp: {
    tls: {
      certFile: {
        doc: 'Certificate chain (PEM) for STARTTLS on the submission and intake listeners. Empty: no TLS is offered, and the ATS may AUTH in clear; keep both listeners on loopback or a private network then.',
        format: String, default: '',
      },
      keyFile: { doc: 'Private key (PEM) of tls.certFile.', format: String, default: '' },
    },
    submission: {
      host: { doc: 'Address of the submission listener (the ATS sends mail through it).', format: String, default: '127.0.0.1' },
      port: { doc: 'Port of the submission listener; 0 disables it.', format: 'port', default: 2587 },
      users: {
        doc: 'Credentials the ATS uses for SMTP AUTH on the submission listener: a list of {user, pass}. As an env var: JSON.',
        format: 'credential-list', default: [{ user: 'ats', pass: 'change-me' }], sensitive: true,
      },
      maxMessageBytes: { doc: 'Largest message the ATS may submit (advertised with SIZE); larger ones are refused with 552.', format: 'nat', default: 26_214_400 },
      maxRecipients: { doc: 'Most recipients of one submitted message; more are refused with 452.', format: 'nat', default: 100 },
    },
    intake: {
      host: { doc: 'Address of the limited-sync intake listener (mail-flow rules forward replies to it).', format: String, default: '127.0.0.1' },
      port: { doc: 'Port of the intake listener; 0 disables it.', format: 'port', default: 2525 },
      maxMessageBytes: { doc: 'Largest forwarded message the intake accepts; larger ones are refused with 552.', format: 'nat', default: 26_214_400 },
      maxRecipients: { doc: 'Most recipients of one forwarded message; more are refused with 452.', format: 'nat', default: 100 },
    },
    relay: {
      concurrency: { doc: 'Messages the relay hands to mail servers at once.', format: 'nat', default: 8 },
      connectionsPerServer: { doc: 'Open SMTP connections kept per sending account (or smarthost). Providers limit these; 2 to 3 is safe for Gmail and Microsoft 365.', format: 'nat', default: 3 },
      retryDelaysSeconds: {
        doc: 'Wait before each new attempt after a temporary failure (4xx reply, connection error); after the last one the message fails with message.failed. The default retries for about 32 hours.',
        format: 'seconds-list', default: [60, 300, 900, 1_800, 3_600, 7_200, 14_400, 28_800, 28_800, 28_800],
      },
      connectTimeoutSeconds: { doc: 'Longest wait for TCP, TLS and the greeting of the mail server.', format: 'nat', default: 30 },
      socketTimeoutSeconds: { doc: 'A connection to a mail server that stays silent this long is given up (and the message retried).', format: 'nat', default: 120 },
      allowPlaintext: {
        doc: 'Allow sending (and the password) without TLS when a mail server offers no STARTTLS. Only for a server on loopback or a trusted network.',
        format: 'boolean', default: false,
      },
      tlsCaFile: { doc: 'Extra CA certificate (PEM) trusted for outgoing SMTP TLS, for servers with a private CA. Empty: the system CAs.', format: String, default: '' },
      smarthost: {
        host: {
          doc: 'Mail server that sends for users whose consent has no smtp settings (for example an organisation relay that may send as its domain). Empty: such users cannot send through mailsync.',
          format: String, default: '',
        },
        port: { doc: 'Port of the smarthost.', format: 'port', default: 587 },
        secure: { doc: 'Implicit TLS to the smarthost (port 465); false uses STARTTLS.', format: 'boolean', default: false },
        user: { doc: 'Login at the smarthost; empty sends without AUTH.', format: String, default: '' },
        pass: { doc: 'Password at the smarthost.', format: String, default: '', sensitive: true },
      },
      appendToSent: {
        doc: 'After sending, put a copy into the user\'s Sent folder over IMAP, for providers that do not keep one. The only write to a mailbox mailsync can make; off unless you turn it on.',
        format: 'boolean', default: false,
      },
      durableAccept: {
        doc: 'Flush each accepted message to disk (fsync) before answering 250, so a power cut loses nothing that was acknowledged. A process crash never loses it either way.',
        format: 'boolean', default: true,
      },
    },
  },
  log: {
    level: { doc: 'Log level: fatal, error, warn, info, debug, trace or silent.', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    pretty: { doc: 'Human-readable logs instead of JSON lines.', format: 'boolean', default: false },
  },
} satisfies SchemaTree;

/** `api.port` → `MAILSYNC_API_PORT`. */
export function envName(path: string[]): string {
  return ['MAILSYNC', ...path].map((p) => p.toUpperCase()).join('_');
}

export function isOption(node: OptionSpec | SchemaTree): node is OptionSpec {
  return typeof node === 'object' && node !== null && 'doc' in node && 'default' in node;
}

/** Every option with its path, in schema order: the source of the config reference. */
export function listOptions(tree: SchemaTree = schema, prefix: string[] = []): Array<{ path: string[]; spec: OptionSpec }> {
  const out: Array<{ path: string[]; spec: OptionSpec }> = [];
  for (const [key, node] of Object.entries(tree)) {
    const path = [...prefix, key];
    if (isOption(node)) out.push({ path, spec: node });
    else out.push(...listOptions(node, path));
  }
  return out;
}
