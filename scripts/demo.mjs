#!/usr/bin/env node
// The guided tour behind `npm run demo`: a real Dovecot with a recruiter's mailbox, a local SMTP
// server standing for the recruiter's mail provider, the real daemon, a real webhook receiver;
// the ATS's email goes out through the daemon's relay, and the candidate's reply travels from
// the mailbox to a signed webhook and the REST API. Runs until Ctrl-C; `--once` exits after the
// tour.
//
// Only Node built-ins are imported statically: on a fresh clone this script installs the
// npm dependencies and builds the daemon before it loads anything else.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const once = process.argv.includes('--once');
const runDir = path.join(root, '.run/demo');
const dovecotDir = path.join(root, '.run/demo-dovecot');
const TOKEN = `demo-token-${crypto.randomBytes(6).toString('hex')}`;
const WEBHOOK_SECRET = `demo-webhook-secret-${crypto.randomBytes(6).toString('hex')}`;
// the ATS's login at mailsync's SMTP submission listener
const ATS_SMTP = { user: 'ats', pass: `demo-relay-${crypto.randomBytes(6).toString('hex')}` };
const RECRUITER = { userId: 'u-robin', name: 'Robin Recruiter', address: 'robin@example.com' };
const CANDIDATE = { id: 'c-pat', name: 'Pat Candidate', address: 'pat.candidate@example.org' };
const ATS_DOMAIN = 'ats.example.net';

const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
let stepNo = 0;
const step = (title) => console.log(`\n${bold(`${++stepNo}. ${title}`)}`);
const say = (s) => console.log(`   ${s}`);
/** Children to stop on any exit, so a failed tour leaves no daemon or Dovecot behind. */
const cleanups = [];
const fail = (msg) => {
  console.error(`\ndemo: ${msg}`);
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // best effort: we are exiting anyway
    }
  }
  process.exit(1);
};
process.on('unhandledRejection', (err) => fail(err instanceof Error ? err.message : String(err)));
process.on('uncaughtException', (err) => fail(err.message));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) fail(`gave up waiting for ${what} after ${timeoutMs / 1000} s (the daemon log is in .run/demo/daemon.log)`);
    await sleep(50);
  }
}

function sh(cmd, args, what) {
  const res = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.status !== 0) fail(`${what} failed (${cmd} ${args.join(' ')} exited with ${res.status ?? res.signal})`);
}

function newestMtime(dir) {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

async function freePort(preferred) {
  const tryPort = (port) => new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(null)).listen(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  return (preferred && (await tryPort(preferred))) || tryPort(0);
}

// ------------------------------------------------------------------ 1. prerequisites
step('Checking what is installed');
if (Number(process.versions.node.split('.')[0]) < 20) fail(`Node.js 20 or newer is needed (this is ${process.version})`);
if (!fs.existsSync(path.join(root, 'node_modules/imapflow'))) {
  say('npm dependencies are missing: running npm ci (no network beyond the npm registry)');
  sh('npm', ['ci', '--no-audit', '--no-fund'], 'installing npm dependencies');
} else say('npm dependencies: present');
const built = path.join(root, 'dist/daemon/cli/main.js');
if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newestMtime(path.join(root, 'daemon'))) {
  say('building the daemon (npm run build)');
  sh('npm', ['run', 'build', '--silent'], 'building');
} else say('daemon build: up to date');

const { ImapFlow } = await import('imapflow');
const MailComposer = (await import('nodemailer/lib/mail-composer/index.js')).default;
const nodemailer = (await import('nodemailer')).default;
const { SMTPServer } = await import('smtp-server');
const { verifySignature } = await import(path.join(root, 'dist/daemon/events/signature.js'));

// ------------------------------------------------------------------ 2. the mail server
step('Starting a private Dovecot IMAP server on 127.0.0.1 (scripts/dovecot.sh)');
if (process.getuid?.() !== 0 && spawnSync('sh', ['-c', 'command -v dovecot']).status !== 0) {
  fail('Dovecot is not installed and installing it needs root (apt-get install dovecot-imapd). Run the demo as root, or install it first.');
}
sh('bash', ['scripts/dovecot.sh', 'start', '--dir', dovecotDir], 'starting Dovecot');
cleanups.push(() => spawnSync('bash', ['scripts/dovecot.sh', 'stop', '--dir', dovecotDir], { cwd: root, stdio: 'ignore' }));
const dovecot = JSON.parse(fs.readFileSync(path.join(dovecotDir, 'env.json'), 'utf8'));
const login = { user: `robin-${crypto.randomBytes(3).toString('hex')}`, pass: `pw-${crypto.randomBytes(9).toString('hex')}` };
sh('bash', ['scripts/dovecot.sh', 'add-user', login.user, login.pass, '--dir', dovecotDir], 'creating the recruiter mailbox');
say(`recruiter mailbox: IMAP login "${login.user}" for ${RECRUITER.address}`);

const imapOptions = () => ({
  host: dovecot.host, port: dovecot.port, secure: false, auth: { user: login.user, pass: login.pass },
  tls: { ca: fs.readFileSync(dovecot.caFile) }, logger: false,
});
async function imap(fn) {
  const client = new ImapFlow(imapOptions());
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.logout().catch(() => client.close());
  }
}
async function compose(mail) {
  return new MailComposer({ ...mail, date: mail.date ?? new Date() }).compile().build();
}
/** What a mail provider does when mail is delivered or sent: the message lands in a folder. */
async function deliver(folder, raw, flags = []) {
  return imap((c) => c.append(folder, raw, flags));
}

say('seeding it with everyday mail mailsync must leave alone');
await deliver('INBOX', await compose({ from: 'Example Weekly <news@example.com>', to: RECRUITER.address, subject: 'This week in hiring', text: 'A newsletter.' }));
await deliver('INBOX', await compose({ from: 'Sam Colleague <sam@example.com>', to: RECRUITER.address, subject: 'Lunch on Friday?', text: 'Private conversation.' }), ['\\Flagged']);
await deliver('Sent', await compose({ from: RECRUITER.address, to: 'Sam Colleague <sam@example.com>', subject: 'Re: Budget', text: 'Private reply.' }), ['\\Seen']);
say('3 private messages in INBOX and Sent');

// ------------------------------------------------------------------ 3. the ATS's webhook endpoint
step('Starting a webhook receiver, standing in for the ATS');
const events = [];
const waiters = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks).toString('utf8');
    const valid = verifySignature(WEBHOOK_SECRET, String(req.headers['x-mailsync-signature'] ?? ''), raw);
    res.writeHead(valid ? 204 : 401).end();
    if (!valid) return console.log(`   ${bold('webhook')} with a BAD signature rejected`);
    const event = JSON.parse(raw);
    event.receivedAt = Date.now();
    events.push(event);
    const d = event.data ?? {};
    const what = event.type === 'mailbox.state_changed' ? `state is now "${d.state}"`
      : event.type === 'message.created' ? `${d.message?.direction} message from ${d.message?.from?.address} in thread ${d.threadId}`
      : event.type === 'thread.linked' ? `thread ${d.threadId} linked to candidate ${d.candidateId}`
      : event.type === 'message.sent' ? `relay delivered ${d.messageId} to ${d.accepted?.join(', ')}` : '';
    console.log(`   ${bold('webhook')} ${event.type} ${dim(event.id)} ${what} ${dim('(signature verified)')}`);
    for (const w of waiters.splice(0)) w();
  });
});
const receiverPort = await freePort();
await new Promise((r) => receiver.listen(receiverPort, '127.0.0.1', r));
const webhookUrl = `http://127.0.0.1:${receiverPort}/mailsync`;
say(`listening on ${webhookUrl}; it checks every X-Mailsync-Signature with the shared secret`);
const waitEvent = (pred, what, timeoutMs = 30_000) => until(async () => events.find(pred), what, timeoutMs);

// ------------------------------------------------------------------ 4. the provider's SMTP server
step('Starting an SMTP server standing for the recruiter\'s mail provider');
// What Gmail or Microsoft 365 do with mail the recruiter sends: check the login, deliver it to
// the recipient, and keep a copy in the sender's Sent folder. Here the candidate's mailbox is
// this terminal, and the copy goes into the demo Dovecot. (mailsync itself never writes to a
// mailbox unless smtp.relay.appendToSent is turned on for providers that keep no copy.)
const provider = new SMTPServer({
  logger: false, disableReverseLookup: true, closeTimeout: 500,
  key: fs.readFileSync(path.join(dovecot.dir, 'key.pem')), cert: fs.readFileSync(dovecot.caFile),
  onAuth(auth, _session, cb) {
    if (auth.username === login.user && auth.password === login.pass) return cb(null, { user: auth.username });
    cb(Object.assign(new Error('5.7.8 Username and Password not accepted'), { responseCode: 535 }));
  },
  onData(stream, session, cb) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const raw = Buffer.concat(chunks);
      const to = session.envelope.rcptTo.map((r) => r.address).join(', ');
      deliver('Sent', raw, ['\\Seen']).then(() => {
        console.log(`   ${bold('provider')} accepted mail from ${session.envelope.mailFrom.address} (logged in as ${session.user}, ${session.secure ? 'TLS' : 'no TLS'}), delivered it to ${to}, kept a copy in Sent`);
        cb(null, 'OK: delivered');
      }, (err) => cb(err));
    });
  },
});
provider.on('error', () => {});
const providerPort = await freePort(2465);
await new Promise((r) => provider.listen(providerPort, '127.0.0.1', r));
cleanups.push(() => provider.close());
say(`listening on 127.0.0.1:${providerPort} with STARTTLS; it takes the recruiter's own login, as Gmail or Microsoft 365 would`);

// ------------------------------------------------------------------ 5. the daemon
step('Starting mailsync on its embedded defaults, with a few environment variables for the demo');
fs.rmSync(runDir, { recursive: true, force: true });
fs.mkdirSync(runDir, { recursive: true });
const apiPort = await freePort(8025);
const submissionPort = await freePort(2587);
const env = {
  ...process.env,
  MAILSYNC_STORE_PATH: path.join(runDir, 'data'),
  MAILSYNC_STORE_KEYFILE: path.join(runDir, 'master.key'),
  MAILSYNC_API_PORT: String(apiPort),
  MAILSYNC_API_TOKENS: TOKEN,
  MAILSYNC_WEBHOOKS_URL: webhookUrl,
  MAILSYNC_WEBHOOKS_SECRET: WEBHOOK_SECRET,
  MAILSYNC_ATS_MESSAGEIDDOMAINS: ATS_DOMAIN,
  // the demo's Dovecot has a self-signed certificate: trust exactly that one for STARTTLS
  MAILSYNC_SYNC_TLSCAFILE: dovecot.caFile,
  MAILSYNC_SYNC_SENTPOLLSECONDS: '2',
  // the SMTP relay: where the ATS sends, with its own login; the intake is not used here
  MAILSYNC_SMTP_SUBMISSION_PORT: String(submissionPort),
  MAILSYNC_SMTP_SUBMISSION_USERS: JSON.stringify([ATS_SMTP]),
  MAILSYNC_SMTP_INTAKE_PORT: '0',
  // the demo provider uses the same self-signed certificate as the demo Dovecot
  MAILSYNC_SMTP_RELAY_TLSCAFILE: dovecot.caFile,
};
const logFile = path.join(runDir, 'daemon.log');
const logFd = fs.openSync(logFile, 'a');
const daemon = spawn(process.execPath, [built, 'serve'], { cwd: runDir, env, stdio: ['ignore', logFd, logFd] });
let stopping = false;
cleanups.push(() => {
  stopping = true;
  daemon.kill('SIGTERM');
});
daemon.on('exit', (code, signal) => {
  if (!stopping) fail(`mailsync exited unexpectedly (${code ?? signal}); its log is ${path.relative(root, logFile)}`);
});
const api = `http://127.0.0.1:${apiPort}`;
async function call(method, url, body, actingUser) {
  const headers = { authorization: `Bearer ${TOKEN}` };
  if (body) headers['content-type'] = 'application/json';
  if (actingUser) headers['x-acting-user'] = actingUser;
  const res = await fetch(api + url, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  const json = text && (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text;
  if (res.status >= 400) fail(`${method} ${url} → ${res.status}: ${text}`);
  return json;
}
await until(async () => (await fetch(`${api}/readyz`)).ok, 'mailsync to become ready');
say(`API on ${api} (bearer token ${TOKEN}); store in ${path.relative(root, runDir)}/data; log in ${path.relative(root, logFile)}`);
say(`SMTP submission for the ATS on 127.0.0.1:${submissionPort} (login ${ATS_SMTP.user} / ${ATS_SMTP.pass})`);
say(`set through MAILSYNC_* variables: the store path, free ports, a fresh token and relay login, the webhook URL and secret, and trust in the demo certificate`);
say(`tracking replies to messages whose Message-ID ends in @${ATS_DOMAIN}`);

// ------------------------------------------------------------------ 6. opt-in
step('The ATS registers the recruiter and the candidate, and the recruiter opts in');
await call('PUT', `/v1/users/${RECRUITER.userId}`, { email: RECRUITER.address, name: RECRUITER.name });
say(`PUT /v1/users/${RECRUITER.userId}              → ${RECRUITER.name} <${RECRUITER.address}>`);
await call('PUT', `/v1/candidates/${CANDIDATE.id}`, { emails: [CANDIDATE.address], name: CANDIDATE.name });
say(`PUT /v1/candidates/${CANDIDATE.id}              → ${CANDIDATE.name} <${CANDIDATE.address}>`);
await call('PUT', `/v1/users/${RECRUITER.userId}/mailbox`, {
  imap: { host: dovecot.host, port: dovecot.port, secure: false, auth: { user: login.user, pass: login.pass } },
  smtp: { host: '127.0.0.1', port: providerPort, secure: false, auth: { user: login.user, pass: login.pass } },
}, RECRUITER.userId);
say(`PUT /v1/users/${RECRUITER.userId}/mailbox      → consent given for IMAP (read) and SMTP (send as Robin); the password is stored encrypted, never shown again`);
await waitEvent((e) => e.type === 'mailbox.state_changed' && e.data?.state === 'live', 'the mailbox to go live');
const status = await call('GET', `/v1/users/${RECRUITER.userId}/mailbox`, null, RECRUITER.userId);
say(`the mailbox is live: watching ${status.folders.map((f) => f.path).join(' and ')}; ${status.counts.messages} messages stored (private mail is not kept)`);

// ------------------------------------------------------------------ 7. the ATS writes to the candidate
step('The ATS emails the candidate from the recruiter\'s address, through mailsync\'s relay');
// Any SMTP client works; nodemailer is the ATS's here. X-Mailsync-Candidate links the thread to
// the candidate; mailsync removes it before the mail leaves.
const ats = nodemailer.createTransport({ host: '127.0.0.1', port: submissionPort, secure: false, auth: ATS_SMTP });
const sentInfo = await ats.sendMail({
  from: `${RECRUITER.name} <${RECRUITER.address}>`, to: `${CANDIDATE.name} <${CANDIDATE.address}>`,
  subject: 'Interview for the Backend Engineer role',
  text: 'Hello Pat,\n\nThank you for applying. Could you do a call on Tuesday or Wednesday?\n\nRobin',
  headers: { 'X-Mailsync-Candidate': CANDIDATE.id },
});
ats.close();
const [, queueId, atsMessageId] = /queued as (\S+) (<[^>]+>)/.exec(sentInfo.response) ?? [];
if (!atsMessageId) fail(`the relay answered "${sentInfo.response}" without a queue id and Message-ID`);
say(`the relay answered: ${sentInfo.response}`);
say(`the thread was recorded before that answer; the Message-ID is stamped in @${ATS_DOMAIN} so replies are recognised`);
const sentEvent = await waitEvent((e) => e.type === 'message.sent' && e.data?.queueId === queueId, 'the relay to send the message');
say(`mailsync sent it with Robin's own login at the provider (message.sent for ${queueId}, thread ${sentEvent.data.threadId})`);
await waitEvent((e) => e.type === 'message.created' && e.data?.message?.messageId === atsMessageId, 'the sent copy to be picked up from Sent');
say('the sync found the provider\'s copy in Sent: the thread now holds the sent message');

// ------------------------------------------------------------------ 8. the candidate replies
step('The candidate replies: the message lands in the recruiter\'s INBOX');
const reply = await compose({
  from: `${CANDIDATE.name} <${CANDIDATE.address}>`, to: `${RECRUITER.name} <${RECRUITER.address}>`,
  subject: 'Re: Interview for the Backend Engineer role', inReplyTo: atsMessageId, references: [atsMessageId],
  text: 'Hi Robin,\n\nTuesday at 10:00 works for me. My CV is attached.\n\nPat',
  attachments: [{ filename: 'cv-pat-candidate.pdf', contentType: 'application/pdf', content: Buffer.from('%PDF-1.4\n% a placeholder CV for the demo\n%%EOF\n') }],
});
const deliveredAt = Date.now();
await deliver('INBOX', reply);
const inbound = await waitEvent((e) => e.type === 'message.created' && e.data?.message?.direction === 'inbound', 'the reply webhook');
say(`the ATS got the webhook ${inbound.receivedAt - deliveredAt} ms after the reply landed (IMAP IDLE, no polling)`);

// ------------------------------------------------------------------ 9. the API
step('The ATS reads the conversation from the API');
const { threads } = await call('GET', `/v1/candidates/${CANDIDATE.id}/threads`);
say(`GET /v1/candidates/${CANDIDATE.id}/threads → ${threads.length} thread: "${threads[0].subject}", ${threads[0].messageCount} messages, origin ${threads[0].origin}`);
const thread = await call('GET', `/v1/threads/${threads[0].id}`);
for (const m of thread.messages) {
  const files = m.attachments.map((a) => `${a.filename} (${a.size} bytes)`).join(', ');
  say(`  ${m.direction === 'outbound' ? '→' : '←'} ${m.date}  ${m.from.address}: "${m.snippet}"${files ? `  📎 ${files}` : ''}`);
}
const received = thread.messages.find((m) => m.direction === 'inbound');
const att = received.attachments[0];
say(`GET /v1/messages/${received.id}/attachments/${att.id} serves the CV's bytes; /raw serves the original message`);

// ------------------------------------------------------------------ 10. nothing changed in the mailbox
step('The mailbox itself was only read by mailsync');
const flags = await imap(async (c) => {
  const out = [];
  for (const folder of ['INBOX', 'Sent']) {
    await c.mailboxOpen(folder, { readOnly: true });
    for await (const m of c.fetch('1:*', { flags: true, envelope: true })) out.push(`${folder}: "${m.envelope.subject}" [${[...m.flags].filter((f) => f !== '\\Recent').join(' ') || 'unread'}]`);
  }
  return out;
});
for (const f of flags) say(f);
say('the copy in Sent was put there by the provider; the candidate\'s reply is still unread: the recruiter sees it as new');

// ------------------------------------------------------------------ the end
step(once ? 'Done (--once): stopping' : 'mailsync keeps running. Try it yourself:');
if (!once) {
  say(`curl -H 'Authorization: Bearer ${TOKEN}' ${api}/v1/candidates/${CANDIDATE.id}/threads`);
  say(`curl -H 'Authorization: Bearer ${TOKEN}' ${api}/v1/events`);
  say(`curl ${api}/openapi.json`);
  say(`Reply again from any IMAP client: 127.0.0.1:${dovecot.port}, user ${login.user}, password ${login.pass}`);
  say(`Send as Robin through the relay: SMTP 127.0.0.1:${submissionPort}, login ${ATS_SMTP.user} / ${ATS_SMTP.pass}, from ${RECRUITER.address}`);
  say('Webhooks keep printing here. Press Ctrl-C to stop.');
}

async function shutdown() {
  if (stopping) return;
  stopping = true;
  daemon.kill('SIGTERM');
  await Promise.race([new Promise((r) => daemon.once('exit', r)), sleep(10_000)]);
  receiver.close();
  provider.close();
  spawnSync('bash', ['scripts/dovecot.sh', 'stop', '--dir', dovecotDir], { cwd: root, stdio: 'ignore' });
  console.log('\nstopped mailsync, the webhook receiver and the demo Dovecot');
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
if (once) await shutdown();
