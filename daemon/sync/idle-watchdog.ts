import type { ImapFlow } from 'imapflow';

/**
 * Liveness of a quiet connection (B35): a NAT box or firewall that forgets a flow drops its
 * packets without a FIN or RST, and an IDLE on it waits forever. When IDLE ends on the
 * worker's own timer (nothing arrived), a NOOP must be answered within `timeoutMs`; otherwise
 * the connection is closed and reported dead, so it is replaced within idleRefresh +
 * probe timeout instead of after the (much longer) socket timeout.
 */
export async function probeConnection(client: ImapFlow, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), timeoutMs);
  });
  // a NOOP that fails is a closed connection, which the session loop already handles
  const answered = client.noop().then(() => 'answered' as const, () => 'answered' as const);
  const first = await Promise.race([answered, late]);
  clearTimeout(timer);
  if (first === 'late') {
    client.close();
    throw Object.assign(new Error(`the server did not answer a NOOP within ${timeoutMs} ms; the connection is treated as dead`), { code: 'ETIMEOUT' });
  }
}
