import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import YAML from 'yaml';
import { loadConfig } from '../../daemon/config/load.js';
import { API_ERRORS } from '../../daemon/errors.js';
import { listOptions } from '../../daemon/config/schema.js';
import { Metrics } from '../../daemon/ops/metrics.js';
import { createMailbox, dovecotEnv } from '../helpers/dovecot.js';
import { startDaemon, TOKEN, waitUntil, WEBHOOK_SECRET } from '../helpers/daemon.js';
import { root } from '../helpers/cli.js';

/**
 * The guides in docs/ against the code: their samples run as printed, their error tables match
 * the registry, and every option, command, metric and link they name exists.
 */

const doc = (name: string) => fs.readFileSync(path.join(root, 'docs', name), 'utf8');
const GUIDES = ['operators-guide.md', 'google-workspace.md', 'microsoft-365.md', 'ats-integration.md'];

/** The ```js blocks of a guide as one module. */
async function samples<T>(name: string): Promise<T> {
  const code = [...doc(name).matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).join('\n');
  return (await import(`data:text/javascript,${encodeURIComponent(code)}`)) as T;
}

interface Samples {
  verifyMailsyncSignature: (secret: string, header: string, raw: string) => boolean;
  createReceiver: (secret: string, onEvent: (e: { id: string; type: string }) => Promise<void>) => http.Server;
  pullEvents: (baseUrl: string, token: string, cursor: string, handle: (e: { id: string }) => Promise<void>) => Promise<string>;
}

t.test('ATS guide: the receiver and the change-feed loop work as printed, against a running daemon', async (t) => {
  const { createReceiver, pullEvents } = await samples<Samples>('ats-integration.md');
  const handled: Array<{ id: string; type: string }> = [];
  const server = createReceiver(WEBHOOK_SECRET, async (e) => {
    handled.push(e);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  const env = dovecotEnv();
  const account = await createMailbox('guide');
  const d = await startDaemon(t, { overrides: { webhooks: { url, secret: WEBHOOK_SECRET }, sync: { tlsCaFile: env.caFile } } });
  await d.api('PUT', '/v1/users/u1', { body: { email: account.address } });
  await d.api('PUT', '/v1/users/u1/mailbox', { actingUser: 'u1', body: { imap: { host: env.host, port: env.port, secure: false, auth: { user: account.user, pass: account.pass } } } });
  await waitUntil(() => handled.some((e) => e.type === 'mailbox.state_changed' && (e as unknown as { data: { state: string } }).data.state === 'live'), 'the live event through the guide\'s receiver');
  t.pass('signed deliveries are accepted and handled');

  const forged = await fetch(url, { method: 'POST', body: JSON.stringify({ id: 'evt_forged', type: 'message.created' }), headers: { 'x-mailsync-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}` } });
  t.equal(forged.status, 401, 'a forged delivery is refused');
  t.notOk(handled.some((e) => e.id === 'evt_forged'), 'and not handled');

  const first = handled[0]!;
  const before = handled.length;
  t.equal((await d.api('POST', `/v1/events/${first.id}/redeliver`)).status, 202);
  await waitUntil(async () => {
    const feed = await d.api<{ events: Array<{ id: string; delivery: { status: string; deliveredAt: string | null } }> }>('GET', '/v1/events?limit=1000');
    const e = feed.body.events.find((x) => x.id === first.id);
    return e?.delivery.status === 'delivered';
  }, 'the redelivery to be acknowledged');
  t.equal(handled.filter((e) => e.id === first.id).length, 1, 'a redelivered event is handled once');
  t.equal(handled.length, before, 'nothing else was handled twice');

  const pulled: Array<{ id: string }> = [];
  const cursor = await pullEvents(d.daemon.apiUrl, TOKEN, '0', async (e) => {
    pulled.push(e);
  });
  t.same(pulled.map((e) => e.id), [...new Set(handled.map((e) => e.id))].sort(), 'the feed holds the same events, in order');
  const again: Array<{ id: string }> = [];
  t.equal(await pullEvents(d.daemon.apiUrl, TOKEN, cursor, async (e) => {
    again.push(e);
  }), cursor, 'asking from the kept cursor returns it unchanged');
  t.same(again, [], 'with nothing new');
});

t.test('ATS guide: the error tables match the code', async (t) => {
  const text = doc('ats-integration.md');
  const rows = [...text.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \|/gm)].map((m) => [m[1], Number(m[2]), m[3] === 'yes']);
  t.same(rows, Object.entries(API_ERRORS).map(([code, spec]) => [code, spec.status, spec.retryable]), 'every API error code with its status and retryability, in registry order');
  const source = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');
  const codes = new Set([
    ...[...source('daemon/sync/error-classifier.ts').matchAll(/code: '([a-z0-9_]+)'/g)].map((m) => m[1]!),
    ...[...source('daemon/sync/oauth2-tokens.ts').matchAll(/new OAuth2Error\('([a-z0-9_]+)'/g)].map((m) => m[1]!),
  ]);
  t.ok(codes.size >= 10, 'the mailbox error codes were found in the sources');
  for (const code of codes) t.match(text, new RegExp(`\`${code}\``), `mailbox error ${code} is explained`);
});

t.test('guides name only options, commands and metrics that exist, and links that resolve', async (t) => {
  const options = listOptions().map((o) => o.path.join('.'));
  const commands = fs.readdirSync(path.join(root, 'dist/daemon/cli/commands')).filter((f) => f.endsWith('.js'));
  const names = await Promise.all(commands.map(async (f) => ((await import(path.join(root, 'dist/daemon/cli/commands', f))) as { default: { name: string } }).default.name));
  for (const name of GUIDES) {
    // prose and tables only: code samples have their own test
    const text = doc(name).replace(/```[\s\S]*?```/g, '');
    for (const m of text.matchAll(/`((?:api|store|ats|webhooks|sync|smtp|log|oauth2|addresses)\.[A-Za-z.]+)`/g)) {
      t.ok(options.some((o) => o === m[1] || o.startsWith(`${m[1]}.`)), `${name}: option ${m[1]} exists`);
    }
    for (const m of text.matchAll(/`mailsync ([a-z]+(?: [a-z]+)?)/g)) {
      t.ok(names.some((n) => m[1] === n || m[1]!.startsWith(`${n} `) || n.startsWith(`${m[1]}`)), `${name}: command "mailsync ${m[1]}" exists`);
    }
    for (const m of text.matchAll(/\]\(([^)#:]+\.md)\)/g)) t.ok(fs.existsSync(path.join(root, 'docs', m[1]!)), `${name}: link to ${m[1]} resolves`);
  }
  const guide = doc('operators-guide.md');
  for (const n of names) t.match(guide, `| \`mailsync ${n}`, `the operator's guide lists "mailsync ${n}"`);
});

t.test('the configuration snippets of the guides are valid configuration', async (t) => {
  for (const name of GUIDES) {
    for (const m of doc(name).matchAll(/```yaml\n([\s\S]*?)```/g)) {
      const snippet = YAML.parse(m[1]!) as Record<string, unknown>;
      t.doesNotThrow(() => loadConfig({ env: {}, overrides: snippet }), `${name}: ${Object.keys(snippet).join(', ')} snippet`);
    }
  }
});

t.test('operator\'s guide and Grafana dashboard cover every metric, and name none that do not exist', async (t) => {
  const exported = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name);
  const own = exported.filter((n) => !/^mailsync_(process_|nodejs_)/.test(n));
  t.ok(own.length >= 12, 'the daemon\'s own metrics');
  const guide = doc('operators-guide.md');
  const dashboard = fs.readFileSync(path.join(root, 'deploy/grafana/mailsync-dashboard.json'), 'utf8');
  const panels = (JSON.parse(dashboard) as { panels: Array<{ targets: Array<{ expr: string }> }> }).panels;
  const exprs = panels.flatMap((p) => p.targets.map((x) => x.expr)).join('\n');
  for (const n of own) {
    t.match(guide, `\`${n}`, `the guide explains ${n}`);
    t.ok(exprs.includes(n), `the dashboard shows ${n}`);
  }
  for (const m of exprs.matchAll(/mailsync_[a-z0-9_]+/g)) {
    const base = m[0].replace(/_(bucket|sum|count)$/, '');
    t.ok(exported.includes(base) || exported.includes(m[0]), `dashboard query uses ${m[0]}, which exists`);
  }
});
