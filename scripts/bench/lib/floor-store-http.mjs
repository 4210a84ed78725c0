// The API floor: a bare node:http server on the same LevelDB that answers
// GET /c/{candidateId} with the least any server could do for a candidate's thread list:
// one range scan of the candidate's activity index (50 keys) and one multi-get of those
// thread records, sent back as stored (no decryption, no JSON, no auth, no ACL).
//   node floor-store-http.mjs STORE_DIR  → prints {"port": N} and serves until killed
import http from 'node:http';
import { Level } from 'level';

const db = new Level(process.argv[2], { keyEncoding: 'utf8', valueEncoding: 'buffer' });
await db.open();
const server = http.createServer(async (req, res) => {
  const cid = decodeURIComponent(req.url.slice(3));
  const prefix = `candact!${cid}!`;
  const keys = await db.keys({ gt: prefix, lt: `${prefix}\xff`, limit: 50 }).all();
  const values = await db.getMany(keys.map((k) => `thr!${k.slice(k.lastIndexOf('!') + 1)}`));
  const body = Buffer.concat(values.filter(Boolean));
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on('SIGTERM', () => server.close(() => db.close().then(() => process.exit(0))));
