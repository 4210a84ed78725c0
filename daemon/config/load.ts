import fs from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import YAML from 'yaml';
import { MailsyncError } from '../errors.js';
import { envName, isOption, listOptions, schema, type OptionSpec, type SchemaTree } from './schema.js';

type ConfigOf<T> = T extends OptionSpec ? T['default'] : { readonly [K in keyof T]: ConfigOf<T[K]> };
/** The validated, frozen configuration. */
export type Config = ConfigOf<typeof schema>;

let formatsAdded = false;

const DOMAIN_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/;

function addFormats(): void {
  if (formatsAdded) return;
  formatsAdded = true;
  convict.addParser([
    { extension: ['yml', 'yaml'], parse: (text: string) => YAML.parse(text) ?? {} },
    { extension: 'json', parse: JSON.parse },
  ]);
  const parseJsonIfString = (v: unknown): unknown => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  };
  const splitIfString = (v: unknown): unknown =>
    typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
  convict.addFormats({
    // convict's own Boolean turns any env string but "false" into true ("0", "no", "off"
    // would switch a safety option ON): only the spellings below are accepted.
    boolean: {
      validate(v: unknown) {
        if (typeof v !== 'boolean') throw new Error('must be true or false (yes/no, on/off and 1/0 are accepted too)');
      },
      coerce: (v: unknown) => {
        if (typeof v !== 'string') return v;
        const s = v.trim().toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(s)) return true;
        if (['false', '0', 'no', 'off'].includes(s)) return false;
        return v;
      },
    },
    'nonempty-string-list': {
      validate(v: unknown) {
        if (!Array.isArray(v) || v.length === 0 || v.some((s) => typeof s !== 'string' || s.length === 0)) {
          throw new Error('must be a list of at least one non-empty string');
        }
      },
      coerce: splitIfString,
    },
    'domain-list': {
      validate(v: unknown) {
        if (!Array.isArray(v)) throw new Error('must be a list of domain names');
        for (const d of v) {
          if (typeof d !== 'string' || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i.test(d)) {
            throw new Error(`"${String(d)}" is not a domain name like ats.example.net`);
          }
        }
      },
      coerce: splitIfString,
    },
    'credential-list': {
      validate(v: unknown) {
        if (!Array.isArray(v)) throw new Error('must be a list of {user, pass}');
        for (const c of v) {
          if (typeof c !== 'object' || c === null || typeof (c as { user?: unknown }).user !== 'string' || typeof (c as { pass?: unknown }).pass !== 'string') {
            throw new Error('every entry must be {user: string, pass: string}');
          }
          const extra = Object.keys(c).filter((k) => k !== 'user' && k !== 'pass');
          if (extra.length) throw new Error(`unknown field ${extra.map((k) => `"${k}"`).join(', ')} in an entry (only user and pass)`);
        }
      },
      coerce: parseJsonIfString,
    },
    'domain-rules': {
      validate(v: unknown) {
        if (!Array.isArray(v)) throw new Error('must be a list of {domain, ignoreDots, tagSeparator, canonicalDomain}');
        const seen = new Set<string>();
        for (const rule of v as unknown[]) {
          if (typeof rule !== 'object' || rule === null) throw new Error('every entry must be {domain, ignoreDots, tagSeparator, canonicalDomain}');
          const r = rule as Record<string, unknown>;
          const domain = String(r.domain);
          if (typeof r.domain !== 'string' || !DOMAIN_RE.test(r.domain)) throw new Error(`"${domain}" is not a lower-case domain name like example.com`);
          if (seen.has(domain)) throw new Error(`${domain} is listed twice`);
          seen.add(domain);
          const extra = Object.keys(r).filter((k) => !['domain', 'ignoreDots', 'tagSeparator', 'canonicalDomain'].includes(k));
          if (extra.length) throw new Error(`${domain}: unknown field ${extra.map((k) => `"${k}"`).join(', ')} (only domain, ignoreDots, tagSeparator, canonicalDomain)`);
          if (typeof r.ignoreDots !== 'boolean') throw new Error(`${domain}: ignoreDots must be true or false`);
          if (!(r.tagSeparator === null || r.tagSeparator === undefined || (typeof r.tagSeparator === 'string' && r.tagSeparator.length === 1))) throw new Error(`${domain}: tagSeparator must be one character (such as "+") or null`);
          if (r.canonicalDomain !== undefined && (typeof r.canonicalDomain !== 'string' || !DOMAIN_RE.test(r.canonicalDomain))) throw new Error(`${domain}: canonicalDomain must be a lower-case domain name`);
        }
      },
      coerce: parseJsonIfString,
    },
    'url-or-empty': {
      validate(v: unknown) {
        if (v === '') return;
        let u: URL;
        try {
          u = new URL(String(v));
        } catch {
          throw new Error('must be an http(s) URL or empty');
        }
        if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http(s) URL or empty');
      },
    },
    'seconds-list': {
      validate(v: unknown) {
        if (!Array.isArray(v) || v.length === 0 || v.some((n) => typeof n !== 'number' || !Number.isFinite(n) || n < 0)) {
          throw new Error('must be a list of at least one number of seconds (0 or more)');
        }
      },
      coerce: (v: unknown) => (typeof v === 'string' ? v.split(',').map((s) => Number(s.trim())) : v),
    },
    // convict's own messages for these ("ports must be within range 0 - 65535") do not say that
    // "8025.5" or "eighty" fail because they are not whole numbers
    port: {
      validate(v: unknown) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) throw new Error(`must be a whole number from 0 to 65535`);
      },
      coerce: (v: unknown) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
    },
    nat: {
      validate(v: unknown) {
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`must be a whole number, 0 or more`);
      },
      coerce: (v: unknown) => (typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : v),
    },
    ratio: {
      validate(v: unknown) {
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Error('must be a number from 0 to 1');
      },
      coerce: (v: unknown) => (typeof v === 'string' ? Number(v) : v),
    },
  });
}

/** The convict schema: our schema plus the env var derived from each path. */
function convictSchema(tree: SchemaTree, prefix: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(tree)) {
    const p = [...prefix, key];
    out[key] = isOption(node) ? { ...node, env: envName(p) } : convictSchema(node, p);
  }
  return out;
}

export interface LoadOptions {
  /** YAML or JSON file; none means the embedded defaults (plus env vars). */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Values that win over file and env (tests). */
  overrides?: Record<string, unknown>;
}

export interface LoadedConfig {
  config: Config;
  /** The effective configuration as JSON with sensitive values replaced. */
  redacted: () => string;
  /** Valid but probably not what the operator meant (default secrets, misspelt env vars). */
  warnings: string[];
}

/**
 * Loads and validates strictly: unknown keys and bad values are errors naming the key.
 * The result is deeply frozen.
 */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  addFormats();
  const env = opts.env ?? process.env;
  const conf = convict(convictSchema(schema) as convict.Schema<Config>, { env, args: [] });
  if (opts.file) {
    const file = path.resolve(opts.file);
    if (!fs.existsSync(file)) throw new MailsyncError('MAILSYNC_ERR_CONFIG', `config file ${opts.file} does not exist`);
    if (!/\.(ya?ml|json)$/i.test(file)) throw new MailsyncError('MAILSYNC_ERR_CONFIG', `config file ${opts.file} must end in .yaml, .yml or .json`);
    let parsed: unknown;
    try {
      const text = fs.readFileSync(file, 'utf8');
      parsed = /\.json$/i.test(file) ? JSON.parse(text) : (YAML.parse(text) ?? {});
    } catch (err) {
      throw new MailsyncError('MAILSYNC_ERR_CONFIG', `config file ${opts.file} cannot be read: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new MailsyncError('MAILSYNC_ERR_CONFIG', `config file ${opts.file} must hold a mapping of options at its top`);
    }
    conf.load(parsed as Record<string, unknown>);
  }
  if (opts.overrides) conf.load(opts.overrides);
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    const lines = String((err as Error).message).split('\n').map((l) => l.trim()).filter(Boolean).map((l) => explainConvictLine(l, env));
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', `invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const config = deepFreeze(conf.getProperties() as unknown as Config);
  if (config.webhooks.url && !config.webhooks.secret) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', 'invalid configuration:\n  webhooks.secret: must be set when webhooks.url is set (receivers verify the signature with it)');
  }
  if (config.store.key && !/^[0-9a-f]{64}$/i.test(config.store.key)) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', 'invalid configuration:\n  store.key: must be 64 hexadecimal characters (32 bytes)');
  }
  if (!!config.smtp.tls.certFile !== !!config.smtp.tls.keyFile) {
    throw new MailsyncError('MAILSYNC_ERR_CONFIG', 'invalid configuration:\n  smtp.tls: certFile and keyFile must be set together');
  }
  return { config, redacted: () => redactedText(config), warnings: configWarnings(config, env) };
}

const REDACTED = '[redacted]';

/**
 * The effective config as JSON with every secret replaced, keeping what an operator needs to
 * check: whether a secret is set at all ("" stays ""), how many tokens there are, which SMTP
 * logins exist (their passwords hidden).
 */
function redactedText(config: Config): string {
  const copy = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
  for (const { path: p, spec } of listOptions()) {
    if (!spec.sensitive) continue;
    const parent = p.slice(0, -1).reduce<Record<string, unknown>>((o, k) => o[k] as Record<string, unknown>, copy);
    const key = p[p.length - 1]!;
    const v = parent[key];
    if (v === '' || (Array.isArray(v) && v.length === 0)) continue;
    parent[key] = Array.isArray(v)
      ? v.map((item: unknown) => (typeof item === 'object' && item !== null ? { ...item, pass: REDACTED } : REDACTED))
      : REDACTED;
  }
  return JSON.stringify(copy, null, 2);
}

const OPTIONS = listOptions();

/** Things that are valid but almost certainly a mistake in production. */
function configWarnings(config: Config, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  const known = new Set(OPTIONS.map((o) => envName(o.path)));
  for (const name of Object.keys(env)) {
    if (name.startsWith('MAILSYNC_') && !known.has(name)) out.push(`environment variable ${name} is not an option of mailsync and is ignored (misspelt? see config/example.yaml)`);
  }
  if (config.api.tokens.includes('change-me')) out.push('api.tokens still holds the default token "change-me": set your own before the API is reachable by anyone else');
  if (config.smtp.submission.port !== 0 && config.smtp.submission.users.some((u) => u.pass === 'change-me')) {
    out.push('smtp.submission.users still holds the default password "change-me": set your own, or set smtp.submission.port to 0');
  }
  const t = config.smtp.tls;
  const exposed = (host: string, port: number) => port !== 0 && !/^(127\.|::1$|localhost$)/.test(host);
  if (!t.certFile && (exposed(config.smtp.submission.host, config.smtp.submission.port) || exposed(config.smtp.intake.host, config.smtp.intake.port))) {
    out.push('an SMTP listener is reachable beyond loopback without smtp.tls: passwords and mail cross the network in clear');
  }
  if (config.ats.messageIdDomains.length === 0) out.push('ats.messageIdDomains is empty: only threads declared with POST /v1/outbound (or the relay) are tracked');
  return out;
}

/** Convict says "configuration param 'x' not declared in the schema": say it in our words. */
function explainConvictLine(line: string, env: NodeJS.ProcessEnv): string {
  const undeclared = /^configuration param '([^']+)' not declared in the schema$/.exec(line);
  if (undeclared) return `${undeclared[1]}: unknown option (see config/example.yaml for the options that exist)`;
  const text = line.replace(/: value was .*$/, (m) => (/\[Sensitive\]/.test(m) ? '' : m));
  // a bad value that came from the environment: name the variable, and the value unless secret
  const key = /^([A-Za-z0-9_.]+):/.exec(text)?.[1];
  const option = key && OPTIONS.find((o) => o.path.join('.') === key);
  if (option && env[envName(option.path)] !== undefined) {
    const name = envName(option.path);
    return `${text.replace(/: value was .*$/, '')} (from ${name}${option.spec.sensitive ? '' : `=${JSON.stringify(env[name])}`})`;
  }
  return text;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
