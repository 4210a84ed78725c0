import fs from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import type { Test } from 'tap';
import { tempDir } from './stack.js';

/** Debian's Chromium (apt-get install chromium), never a downloaded browser build. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Why the browser tests cannot run here (for tap's `skip`), or false when they can. CI
 * (.ci/run) installs Chromium, so there a missing browser is an error, not a skip.
 */
export function chromiumMissing(): string | false {
  if (fs.existsSync(CHROMIUM)) return false;
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs it with apt-get install chromium`);
  return `${CHROMIUM} is missing: apt-get install chromium to run the browser tests`;
}

/** Headless Chromium with a fresh profile, closed when the test ends. */
export async function launchBrowser(t: Test): Promise<BrowserContext> {
  const profile = path.join(tempDir(t, 'mailsync-chromium-'), 'profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(() => context.close());
  return context;
}
