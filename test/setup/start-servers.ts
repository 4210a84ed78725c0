// tap `before` script: makes sure the test Dovecot instance is running and has
// written .run/test-dovecot/env.json, which test/helpers/dovecot.ts reads.
// An instance that is already running from that directory is reused.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../', import.meta.url))

// The lease (our parent: the tap runner, which also runs the `after` script)
// keeps a concurrent tap run in this checkout from stopping Dovecot under us.
execFileSync(
  'bash',
  [`${repoRoot}scripts/dovecot.sh`, 'start', '--dir', `${repoRoot}.run/test-dovecot`, '--lease', String(process.ppid)],
  { stdio: 'inherit' },
)
