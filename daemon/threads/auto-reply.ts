import { firstHeader, type HeaderField } from './headers.js';

/**
 * Auto-replies (out-of-office, autoresponders) are stored but flagged, so the ATS does not
 * mistake them for the candidate's answer. Signals, strongest first: RFC 3834
 * Auto-Submitted, the vendor headers, Precedence, and the subjects mail clients use.
 */

const OOO_SUBJECTS: RegExp[] = [
  /^(auto(matic)?[\s-]*(reply|response|antwort)|autoreply|autosvar|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|resposta autom[áa]tica)\b/i,
  /\bout of (the )?office\b/i,
  /^abwesenheitsnotiz\b/i,
  /^(absence|abwesend|afwezig|fuera de la oficina)\b/i,
];

export interface AutoReplyVerdict {
  autoReply: boolean;
  reason: string | null;
}

export function detectAutoReply(headers: HeaderField[], subject: string): AutoReplyVerdict {
  const autoSubmitted = firstHeader(headers, 'auto-submitted')?.trim().toLowerCase();
  if (autoSubmitted && autoSubmitted !== 'no') return { autoReply: true, reason: `Auto-Submitted: ${autoSubmitted}` };
  for (const h of ['x-autoreply', 'x-autorespond', 'x-auto-response-suppress-sender']) {
    if (firstHeader(headers, h) !== null) return { autoReply: true, reason: h };
  }
  const precedence = firstHeader(headers, 'precedence')?.trim().toLowerCase();
  if (precedence === 'bulk' || precedence === 'auto_reply' || precedence === 'junk') return { autoReply: true, reason: `Precedence: ${precedence}` };
  const stripped = subject.replace(/^\s*((re|aw|sv|fw|fwd)\s*:\s*)+/i, '');
  for (const re of OOO_SUBJECTS) if (re.test(stripped) || re.test(subject)) return { autoReply: true, reason: 'subject' };
  return { autoReply: false, reason: null };
}
