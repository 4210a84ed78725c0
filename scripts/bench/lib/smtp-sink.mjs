// An SMTP server standing for a mail provider, in a process of its own (as a provider is not in
// the ATS's process): accepts every message, counts them by Message-ID, and answers the parent's
// questions over IPC. Started by scripts/bench/relay.mjs.
import { SMTPServer } from 'smtp-server';

const seen = new Map();
let count = 0;
const server = new SMTPServer({
  logger: false, disableReverseLookup: true, authOptional: true, allowInsecureAuth: true, disabledCommands: ['STARTTLS'], closeTimeout: 200,
  onAuth(auth, _session, cb) {
    cb(null, { user: auth.username });
  },
  onData(stream, _session, cb) {
    let head = '';
    stream.on('data', (c) => {
      if (head.length < 4096) head += c.toString('latin1');
    });
    stream.on('end', () => {
      const id = /^message-id:\s*(\S+)/im.exec(head)?.[1] ?? `none-${count}`;
      seen.set(id, (seen.get(id) ?? 0) + 1);
      count++;
      cb(null, 'OK');
    });
  },
});
server.on('error', () => {});
server.listen(0, '127.0.0.1', () => process.send({ port: server.server.address().port }));
process.on('message', (m) => {
  if (m === 'count') process.send({ count });
  else if (m === 'duplicates') process.send({ duplicates: [...seen.values()].filter((n) => n > 1).length });
  else if (m === 'reset') {
    seen.clear();
    count = 0;
    process.send({ reset: true });
  } else if (m === 'stop') server.close(() => process.exit(0));
});
process.on('disconnect', () => process.exit(0));
