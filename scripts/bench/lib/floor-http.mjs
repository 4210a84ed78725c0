// The webhook floor: a bare sender in its own process that POSTs `count` signed JSON bodies of
// the daemon's size with `concurrency` requests in flight over keep-alive connections (plain
// node:http, the cheapest client Node has). Nothing read from a store, nothing recorded.
//   node floor-http.mjs URL COUNT CONCURRENCY BODY_BYTES SECRET  → prints {ms} as JSON
import crypto from 'node:crypto';
import http from 'node:http';

const [url, countArg, concArg, sizeArg, secret] = process.argv.slice(2);
const count = Number(countArg), concurrency = Number(concArg), size = Number(sizeArg);
const pad = 'x'.repeat(Math.max(0, size - 120));
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

function post(body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end(body);
  });
}

let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < count) {
    const i = next++;
    const body = JSON.stringify({ id: `evt_floor${i}`, type: 'message.created', createdAt: new Date().toISOString(), data: { pad } });
    const t = Math.floor(Date.now() / 1000);
    const sig = crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
    await post(body, { 'content-type': 'application/json', 'x-mailsync-event': 'message.created', 'x-mailsync-delivery': `evt_floor${i}`, 'x-mailsync-signature': `t=${t},v1=${sig}` });
  }
}));
process.stdout.write(`${JSON.stringify({ ms: performance.now() - t0 })}\n`);
agent.destroy();
