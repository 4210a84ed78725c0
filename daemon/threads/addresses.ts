import { domainToASCII } from 'node:url';
import addressparser from 'nodemailer/lib/addressparser';
import { decodeEncodedWords } from './headers.js';

/**
 * Addresses: parsed leniently (Outlook's unquoted "Last, First" names, B27), kept verbatim
 * for display, and normalised only for matching (B32): case-insensitive, IDN domains in their
 * A-label form (B30), and per-domain provider rules for dots and +tags.
 */

export interface Address {
  address: string;
  name: string;
}

export interface DomainRule {
  /** Dots in the local part do not matter (consumer Gmail). */
  ignoreDots: boolean;
  /** Everything from this character on in the local part is a tag (`+` for Gmail). */
  tagSeparator: string | null;
  /** The domain this one is the same mailbox as (googlemail.com → gmail.com). */
  canonicalDomain?: string;
}

/** Dots and +tags matter only where the provider says so: only consumer Gmail by default. */
export const DEFAULT_DOMAIN_RULES: Readonly<Record<string, DomainRule>> = Object.freeze({
  'gmail.com': { ignoreDots: true, tagSeparator: '+' },
  'googlemail.com': { ignoreDots: true, tagSeparator: '+', canonicalDomain: 'gmail.com' },
});

/** Parses an address header value; group members are flattened; entries without an address are dropped. */
export function parseAddressList(value: string | null | undefined): Address[] {
  if (!value) return [];
  let parsed: ReturnType<typeof addressparser>;
  try {
    parsed = addressparser(value);
  } catch {
    return [];
  }
  const out: Address[] = [];
  const visit = (entries: ReturnType<typeof addressparser>): void => {
    for (const e of entries) {
      if ('group' in e && Array.isArray(e.group)) visit(e.group);
      else if ('address' in e && typeof e.address === 'string' && e.address.includes('@')) {
        out.push({ address: e.address.trim(), name: decodeEncodedWords(e.name ?? '').trim() });
      }
    }
  };
  visit(parsed);
  return out;
}

/** The form used for matching; the stored address stays as written. */
export function normaliseAddress(address: string, rules: Readonly<Record<string, DomainRule>> = DEFAULT_DOMAIN_RULES): string {
  const trimmed = address.trim().replace(/^<|>$/g, '');
  const at = trimmed.lastIndexOf('@');
  if (at <= 0) return trimmed.toLowerCase();
  let local = trimmed.slice(0, at).toLowerCase();
  const rawDomain = trimmed.slice(at + 1).toLowerCase().replace(/\.$/, '');
  let domain = domainToASCII(rawDomain) || rawDomain;
  const rule = rules[domain];
  if (rule) {
    if (rule.tagSeparator) {
      const cut = local.indexOf(rule.tagSeparator);
      if (cut > 0) local = local.slice(0, cut);
    }
    if (rule.ignoreDots) local = local.replace(/\./g, '');
    if (rule.canonicalDomain) domain = rule.canonicalDomain;
  }
  return `${local}@${domain}`;
}
