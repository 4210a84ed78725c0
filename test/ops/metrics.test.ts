import t from 'tap';
import { appendMessage, buildMessage, createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, startReceiver, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';

/** /metrics as Prometheus scrapes it, while a real mailbox syncs and a reply becomes a webhook. */

function sample(text: string, name: string, labels = ''): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : null;
}

t.test('metrics of a live mailbox, a stored reply and its webhook', async (t) => {
  const env = dovecotEnv();
  const account = await createMailbox('metrics');
  const receiver = await startReceiver(t);
  const d = await startDaemon(t, { overrides: { webhooks: { url: receiver.url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } } });
  const scrape = async () => {
    const res = await fetch(`${d.daemon.apiUrl}/metrics`);
    t.match(res.headers.get('content-type'), /text\/plain/);
    return res.text();
  };

  await d.api('PUT', '/v1/users/u1', { body: { email: account.address } });
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: account.user, pass: account.pass } }, syncSince: '2020-01-01T00:00:00Z' } });
  await waitUntil(async () => (await d.api('GET', '/v1/users/u1/mailbox', { actingUser: 'u1' })).body.state === 'live', 'live');

  let text = await scrape();
  t.equal(sample(text, 'mailsync_connections', '{state="live"}'), 1, 'one mailbox live');
  t.equal(sample(text, 'mailsync_connections', '{state="auth_failed"}'), 0, 'states without mailboxes report 0');
  t.equal(sample(text, 'mailsync_imap_connections'), 1, 'one open IMAP connection');
  const checkAge = sample(text, 'mailsync_folder_check_age_seconds');
  t.ok(checkAge !== null && checkAge >= 0 && checkAge < 120, 'folders were checked recently');

  const stored = sample(text, 'mailsync_messages_stored_total') ?? 0;
  await appendMessage(account, 'INBOX', buildMessage({ from: 'Pat Candidate <pat@example.org>', to: account.address, subject: 'Re: Interview', messageId: '<m-reply-1@example.org>', inReplyTo: '<m-int-1@ats.example.net>', references: '<m-int-1@ats.example.net>', text: 'Tuesday works.' }));
  await receiver.waitFor((w) => w.body.type === 'message.created', 'the reply webhook');
  text = await waitUntil(async () => {
    const s = await scrape();
    return (sample(s, 'mailsync_webhook_deliveries_total', '{outcome="delivered"}') ?? 0) >= 2 ? s : null;
  }, 'delivered webhooks to be counted');
  t.ok((sample(text, 'mailsync_messages_stored_total') ?? 0) > stored, 'the stored message is counted');
  t.ok((sample(text, 'mailsync_messages_examined_total') ?? 0) >= 1, 'examined messages are counted');
  t.ok((sample(text, 'mailsync_sync_lag_seconds_count') ?? 0) >= 1, 'the live reply has a sync lag observation');
  t.ok((sample(text, 'mailsync_webhook_delivery_seconds_count') ?? 0) >= 2, 'delivery latency is observed');
  t.equal(sample(text, 'mailsync_outbox_depth'), 0, 'nothing left to deliver');
  for (const name of ['mailsync_messages_quarantined_total', 'mailsync_oauth_refreshes_total', 'mailsync_relay_queue_depth', 'mailsync_api_auth_failures_total', 'mailsync_nodejs_eventloop_lag_seconds', 'mailsync_process_cpu_seconds_total', 'mailsync_process_resident_memory_bytes']) {
    t.ok(text.includes(`# HELP ${name} `), `${name} is exported`);
  }
  t.notOk(text.includes(account.pass), 'no secret in the metrics');
});
