import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import YAML from 'yaml';
import t from 'tap';
import { root, runCli } from '../helpers/cli.js';
import { startDaemon } from '../helpers/daemon.js';
import { tempDir } from '../helpers/stack.js';

/**
 * The container image, the systemd unit and the Kubernetes manifests. No container engine
 * runs here, so the Dockerfile is checked for what it promises and its HEALTHCHECK command is
 * run against a live daemon; the unit goes through systemd-analyze; the manifests are parsed
 * and their configuration is validated by `mailsync config check`.
 */

const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');

t.test('Dockerfile: multi-stage on slim Node 20, non-root, /data volume, a working HEALTHCHECK', async (t) => {
  const text = read('Dockerfile').replace(/\\\n\s*/g, ' ');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const froms = lines.filter((l) => l.startsWith('FROM '));
  t.equal(froms.length, 2, 'a build stage and a runtime stage');
  for (const f of froms) t.match(f, /^FROM node:20-[a-z]+-slim\b/, `${f}: slim Node 20`);
  const runtime = lines.slice(lines.indexOf(froms[1]!));
  t.ok(runtime.includes('USER node'), 'runs as the unprivileged node user');
  t.ok(runtime.some((l) => /^VOLUME \["\/data"\]/.test(l)), 'data on a /data volume');
  t.ok(runtime.some((l) => /^ENTRYPOINT \["node", "dist\/daemon\/cli\/main\.js"\]/.test(l)), 'node runs the daemon itself (signals reach it)');

  const ignored = read('.dockerignore').split('\n').filter(Boolean);
  for (const copy of lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from'))) {
    for (const src of copy.split(/\s+/).slice(1, -1)) {
      t.ok(fs.existsSync(path.join(root, src)), `COPY ${src}: exists in the repository`);
      t.notOk(ignored.includes(src), `and is not excluded by .dockerignore`);
    }
  }

  const env = Object.fromEntries([...runtime.join(' ').matchAll(/(MAILSYNC_[A-Z_]+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
  t.ok(Object.keys(env).length >= 3, 'the image configures the store and listeners by env');
  const dir = tempDir(t);
  const check = await runCli(['config', 'check'], { env: { ...env, MAILSYNC_STORE_PATH: path.join(dir, 'store'), MAILSYNC_STORE_KEYFILE: path.join(dir, 'key') } });
  t.equal(check.code, 0, check.stderr);
  t.notMatch(check.stderr, /is not an option/, 'every variable the image sets is an option');

  const health = /HEALTHCHECK .*?CMD (.+)$/m.exec(text)?.[1];
  t.ok(health, 'a HEALTHCHECK command');
  const d = await startDaemon(t);
  const port = new URL(d.daemon.apiUrl).port;
  // not spawnSync: the daemon answering the check runs in this process
  const run = (p: string) => new Promise<number | null>((resolve) => {
    spawn('sh', ['-c', health!], { env: { PATH: process.env.PATH ?? '', MAILSYNC_API_PORT: p }, stdio: 'ignore' }).on('exit', (code) => resolve(code));
  });
  t.equal(await run(port), 0, 'the health check passes against a live daemon');
  await d.stop();
  t.equal(await run(port), 1, 'and fails once it stopped');
});

t.test('systemd unit: verified by systemd-analyze, starts the built CLI', async (t) => {
  const unit = read('deploy/systemd/mailsync.service');
  const exec = /^ExecStart=(\S+) \/opt\/mailsync\/(\S+) (.*)$/m.exec(unit);
  t.ok(exec, 'ExecStart runs node on the installed CLI');
  t.equal(exec![1], '/usr/bin/node', 'node directly, not npx');
  t.ok(fs.existsSync(path.join(root, exec![2]!)), `${exec![2]} is what npm run build makes`);
  t.match(exec![3], /^serve --config \S+\.yaml$/);
  t.match(unit, /^User=mailsync$/m, 'not root');
  t.match(unit, /^TimeoutStopSec=(\d+)$/m);
  t.ok(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1]) > 30, 'systemd waits longer than the daemon\'s own 30 s stop');
  const analyze = spawnSync('systemd-analyze', ['verify', path.join(root, 'deploy/systemd/mailsync.service')], { encoding: 'utf8' });
  if (analyze.error) {
    t.comment('systemd-analyze is not installed: the unit was checked by its text only');
    return;
  }
  t.equal(analyze.status, 0, `systemd-analyze verify: ${analyze.stderr}`);
  t.equal(analyze.stderr.trim(), '', 'without a warning');
});

t.test('Kubernetes: StatefulSet with a volume, probes, and a configuration mailsync accepts', async (t) => {
  const docs = YAML.parseAllDocuments(read('deploy/kubernetes/mailsync.yaml'));
  t.same(docs.flatMap((d) => d.errors.map((e) => e.message)), [], 'the manifests are valid YAML');
  const objs = docs.map((d) => d.toJS() as { kind: string; metadata: { name: string }; [k: string]: unknown });
  t.same(objs.map((o) => o.kind), ['Secret', 'ConfigMap', 'Service', 'StatefulSet']);
  type Container = { args: string[]; ports: Array<{ name: string; containerPort: number }>; volumeMounts: Array<{ name: string; mountPath: string }>; livenessProbe: { httpGet: { path: string } }; readinessProbe: { httpGet: { path: string } }; envFrom: Array<{ secretRef: { name: string } }> };
  const sts = objs[3] as unknown as { spec: { replicas: number; volumeClaimTemplates: Array<{ metadata: { name: string } }>; template: { spec: { securityContext: { runAsNonRoot: boolean }; containers: Container[]; volumes: Array<{ name: string; configMap: { name: string } }> } } } };
  const c = sts.spec.template.spec.containers[0]!;
  t.equal(sts.spec.replicas, 1, 'one pod per store (LevelDB allows one process)');
  t.equal(sts.spec.volumeClaimTemplates[0]!.metadata.name, 'data');
  t.ok(c.volumeMounts.some((m) => m.name === 'data' && m.mountPath === '/data'), 'the volume is mounted at /data');
  t.equal(c.livenessProbe.httpGet.path, '/healthz');
  t.equal(c.readinessProbe.httpGet.path, '/readyz');
  t.ok(sts.spec.template.spec.securityContext.runAsNonRoot, 'non-root');
  const svc = objs[2] as unknown as { spec: { ports: Array<{ targetPort: string }> } };
  for (const p of svc.spec.ports) t.ok(c.ports.some((cp) => cp.name === p.targetPort), `service port ${p.targetPort} exists on the container`);
  const secret = objs[0] as unknown as { metadata: { name: string }; stringData: Record<string, string> };
  t.equal(c.envFrom[0]!.secretRef.name, secret.metadata.name);
  const configMap = objs[1] as unknown as { data: Record<string, string> };

  // the configuration the pod gets: the ConfigMap's file, the Secret's variables, the image's env
  const dir = tempDir(t);
  const file = path.join(dir, 'mailsync.yaml');
  const doc = YAML.parse(configMap.data['mailsync.yaml']!) as { store: { path: string; keyFile?: string } };
  doc.store.path = path.join(dir, 'store');
  fs.writeFileSync(file, YAML.stringify(doc));
  t.equal(c.args.join(' '), `serve --config /etc/mailsync/${path.basename(file)}`);
  const unchanged = await runCli(['config', 'check', '--config', file], { env: secret.stringData });
  t.equal(unchanged.code, 1, 'the placeholder key cannot be deployed as it is');
  t.match(unchanged.stderr, /store\.key: must be 64 hexadecimal characters/);
  const filled = await runCli(['config', 'check', '--config', file], { env: { ...secret.stringData, MAILSYNC_STORE_KEY: 'ab'.repeat(32) } });
  t.equal(filled.code, 0, filled.stderr);
  t.notMatch(filled.stderr, /is not an option/, 'every variable of the Secret is an option');
});
