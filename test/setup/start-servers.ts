// tap `before` script: makes sure the test Dovecot instance is running and has
// written .run/test-dovecot/env.json, which test/helpers/dovecot.ts reads.
// An instance that is already running from that directory is reused.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

// The lease (our parent: the tap runner, which also runs the `after` script)
// keeps a concurrent tap run in this checkout from stopping Dovecot under us.
execFileSync(
  'bash',
  [`${repoRoot}scripts/dovecot.sh`, 'start', '--dir', `${repoRoot}.run/test-dovecot`, '--lease', String(process.ppid)],
  { stdio: 'inherit' },
)

// Logs of earlier runs whose tap runner is gone (an interrupted run, or one that found a leak
// and kept them) are removed, so this run's scan reads only its own.
const logRoot = `${repoRoot}.run/test-logs`
for (const name of fs.existsSync(logRoot) ? fs.readdirSync(logRoot) : []) {
  const pid = Number(/^run-(\d+)$/.exec(name)?.[1])
  if (!pid || pid === process.ppid) continue
  let alive = true
  try {
    process.kill(pid, 0)
  } catch {
    alive = false
  }
  if (!alive) fs.rmSync(`${logRoot}/${name}`, { recursive: true, force: true })
}
