// tap `after` script: stops the test Dovecot instance unless another tap run
// still holds a lease on it, or MAILSYNC_TEST_KEEP_DOVECOT=1 asks to keep it
// (to inspect its mail and log, or to skip start-up on the next run).
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

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
