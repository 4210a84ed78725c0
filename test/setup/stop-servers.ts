// tap `after` script: stops the test Dovecot instance unless another tap run
// still holds a lease on it, or MAILSYNC_TEST_KEEP_DOVECOT=1 asks to keep it
// (to inspect its mail and log, or to skip start-up on the next run).
// Then scans the logs of every daemon the run started for every secret the
// tests gave them (test/helpers/log-capture.ts) and fails the run on a find.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import { BODY_MARKER, readNotedSecrets, runDir } from '../helpers/log-capture.js'
import { describeLeaks, scanLogDir, type Secret } from '../helpers/log-scan.js'
import { TOKEN, WEBHOOK_SECRET } from '../helpers/daemon.js'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

if (process.env.MAILSYNC_TEST_KEEP_DOVECOT === '1') {
  console.log('dovecot: left running (MAILSYNC_TEST_KEEP_DOVECOT=1)')
} else {
  execFileSync(
    'bash',
    [`${repoRoot}scripts/dovecot.sh`, 'stop', '--dir', `${repoRoot}.run/test-dovecot`, '--lease', String(process.ppid)],
    { stdio: 'inherit' },
  )
}

// the tap runner is our parent, as it is the test files'
const dir = runDir(process.ppid)
const secrets: Secret[] = [
  { kind: 'api token', value: TOKEN },
  { kind: 'webhook secret', value: WEBHOOK_SECRET },
  { kind: 'message body marker', value: BODY_MARKER },
  ...readNotedSecrets(dir),
]
const started = Date.now()
const result = scanLogDir(dir, secrets)
const kinds = [...new Set(secrets.map((s) => s.kind))].sort().join(', ')
const summary = `log scan: ${result.files} daemon and command logs (${result.lines} lines, ${(result.bytes / 1e6).toFixed(1)} MB) searched for ${secrets.length} secrets (${kinds}) in ${Date.now() - started} ms`
if (result.leaks.length) {
  console.error(`${summary}: ${result.leaks.length} LEAKS — the logs are kept in ${dir}\n${describeLeaks(result.leaks)}`)
  process.exitCode = 1
} else {
  console.log(`${summary}: none found`)
  if (process.env.MAILSYNC_TEST_KEEP_LOGS !== '1') fs.rmSync(dir, { recursive: true, force: true })
}
