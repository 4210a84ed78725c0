// The push floor: bare imapflow clients, one per mailbox, each EXAMINEs INBOX and sits in
// IDLE; every EXISTS is reported to the parent with the time it arrived. Runs in its own
// process so its memory and CPU can be measured like the daemon's.
//
// The parent sends {type: 'start', env, logins: [{user, pass}]} over IPC; this process answers
// {type: 'ready', connected, failed}, then {type: 'exists', user, count, at} per EXISTS
// (`at`: ms since the epoch, sub-millisecond), and leaves on {type: 'stop'}.
import fs from 'node:fs';
import { ImapFlow } from 'imapflow';

const now = () => performance.timeOrigin + performance.now();
const clients = [];
let caCache = null;

async function watch(env, login) {
  const client = new ImapFlow({
    // STARTTLS like the daemon (Dovecot offers it): TLS state is part of a connection's cost
    host: env.host, port: env.port, secure: false, doSTARTTLS: true, tls: { ca: (caCache ??= fs.readFileSync(env.caFile)) }, logger: false, auth: login,
    // IDLE is entered by hand at once; imapflow's auto-IDLE would wait 15 s first
    disableAutoIdle: true, maxIdleTime: 25 * 60_000,
  });
  client.on('error', () => {});
  client.on('exists', (d) => process.send({ type: 'exists', user: login.user, count: d.count, at: now() }));
  await client.connect();
  await client.mailboxOpen('INBOX', { readOnly: true });
  clients.push(client);
  // idle() returns when IDLE ends (maxIdleTime, a dropped socket): enter it again
  (async () => {
    while (client.usable) await client.idle().catch(() => undefined);
  })();
}

process.on('message', async (msg) => {
  if (msg.type === 'start') {
    let connected = 0, failed = 0;
    const queue = [...msg.logins];
    // 50 logins in flight: setup only, not measured
    const workers = Array.from({ length: Math.min(50, queue.length) }, async () => {
      while (queue.length) {
        const login = queue.shift();
        try {
          await watch(msg.env, login);
          connected++;
        } catch {
          failed++;
        }
      }
    });
    await Promise.all(workers);
    process.send({ type: 'ready', connected, failed });
  } else if (msg.type === 'stop') {
    await Promise.allSettled(clients.map((c) => Promise.race([c.logout(), new Promise((r) => setTimeout(r, 2000))])));
    process.exit(0);
  }
});
