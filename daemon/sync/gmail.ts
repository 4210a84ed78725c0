import crypto from 'node:crypto';
import type { ImapFlow, ListResponse } from 'imapflow';

/**
 * Gmail over IMAP (capability X-GM-EXT-1). Every message sits once in the `\All` folder ("All
 * Mail"), sent mail included, so that one folder is watched instead of INBOX and Sent; labels
 * only add more views of the same message. X-GM-MSGID names a message across all those views,
 * X-GM-THRID names Gmail's conversation, and X-GM-RAW searches the way Gmail's search box does
 * (dots and +tags of gmail.com addresses included).
 */

export function isGmail(client: ImapFlow): boolean {
  return client.capabilities.has('X-GM-EXT-1');
}

/** The `\All` folder of a Gmail account, or null when this is not Gmail or it is hidden from IMAP. */
export function gmailAllFolder(client: ImapFlow, list: ListResponse[]): ListResponse | null {
  if (!isGmail(client)) return null;
  return list.find((m) => isAllMail(m) && !m.flags?.has('\\Noselect')) ?? null;
}

/** imapflow leaves `specialUse` unset for \All: read the LIST flag itself. */
export function isAllMail(m: ListResponse): boolean {
  return m.specialUse === '\\All' || !!m.flags?.has('\\All');
}

/** Who the provider ids of a connection belong to (thread ids are unique within one account only). */
const scopes = new WeakMap<ImapFlow, string>();

export function scopeProviderIds(client: ImapFlow, scope: string): void {
  scopes.set(client, scope);
}

export interface ProviderIds {
  /** X-GM-MSGID (or RFC 8474 EMAILID): one message, whichever folder it is seen in. */
  emailId: string | null;
  /** Match key of the provider's conversation (X-GM-THRID / THREADID), scoped to the account. */
  threadKey: string | null;
}

/** Keyed so a thread id of one account never meets the same number of another account. */
export function providerIds(client: ImapFlow, emailId: string | undefined, threadId: string | undefined): ProviderIds {
  const scope = scopes.get(client);
  if (!scope) return { emailId: null, threadKey: null };
  const hash = (s: string) => crypto.createHash('sha256').update(`${scope}\n${s}`).digest('base64url').slice(0, 22);
  return {
    emailId: emailId ? hash(`msg:${emailId}`) : null,
    threadKey: threadId ? `xthr:${hash(`thr:${threadId}`)}` : null,
  };
}

/** X-GM-RAW query for mail from, to or cc any of these addresses (braces: any of the terms). */
export function gmailAddressQuery(addresses: string[]): string {
  return `{${addresses.flatMap((a) => [`from:${a}`, `to:${a}`, `cc:${a}`]).join(' ')}}`;
}
