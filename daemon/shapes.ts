import type { StoredMessage, ThreadRecord } from './store/records.js';

/** API shapes (API.md) derived from stored records. Pure. */

export interface ApiAttachment {
  id: string;
  filename: string | null;
  contentType: string;
  size: number;
}

export function toApiMessage(m: StoredMessage, opts: { withBody: boolean } = { withBody: true }): Record<string, unknown> {
  const base: Record<string, unknown> = {
    id: m.key,
    threadId: m.threadId,
    messageId: m.messageId,
    inReplyTo: m.inReplyTo,
    references: m.references,
    date: m.date,
    direction: m.direction,
    from: m.from ?? { address: '', name: '' },
    to: m.to,
    cc: m.cc,
    subject: m.subject,
  };
  if (opts.withBody) {
    base.text = m.text;
    base.html = m.html;
  }
  return {
    ...base,
    snippet: m.snippet,
    attachments: m.attachments.map((a): ApiAttachment => ({ id: a.id, filename: a.filename, contentType: a.contentType, size: a.size })),
    seenIn: m.seenIn,
    autoReply: m.autoReply,
    originalAvailable: m.rawStored,
  };
}

export function toThreadSummary(t: ThreadRecord): Record<string, unknown> {
  return {
    id: t.id,
    subject: t.subject,
    origin: t.origin,
    candidateIds: t.candidateIds,
    ownerUserIds: t.ownerUserIds,
    secret: t.secret,
    participants: t.participants,
    messageCount: t.messageCount,
    lastMessageAt: t.lastMessageAt,
    snippet: t.snippet,
  };
}

/** Whitespace collapsed, quoted lines dropped, at most 200 characters. */
export function makeSnippet(text: string): string {
  const lines = text.split(/\r?\n/).filter((l) => !/^\s*>/.test(l));
  const flat = lines.join(' ').replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 199)}…` : flat;
}
