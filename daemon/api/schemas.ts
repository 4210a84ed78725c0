/** JSON schemas of the contract (API.md): request validation and the OpenAPI document. */

export const ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';

export const idParam = (name: string) => ({
  type: 'object',
  required: [name],
  properties: { [name]: { type: 'string', pattern: ID_PATTERN } },
}) as const;

export const daemonIdParam = (name: string, prefix: string) => ({
  type: 'object',
  required: [name],
  properties: { [name]: { type: 'string', pattern: `^${prefix}[A-Za-z0-9_-]{1,64}$` } },
}) as const;

export const email = { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s@<>]+@[^\\s@<>]+$' } as const;

export const messageIdString = { type: 'string', minLength: 3, maxLength: 998, pattern: '^\\s*<[^<>\\s]+@[^<>\\s]+>\\s*$' } as const;

const password = {
  type: 'object', additionalProperties: false, required: ['user', 'pass'],
  properties: { user: { type: 'string', minLength: 1, maxLength: 320 }, pass: { type: 'string', minLength: 1, maxLength: 1024 } },
} as const;

const oauth2 = {
  type: 'object', additionalProperties: false, required: ['user', 'oauth2'],
  properties: {
    user: { type: 'string', minLength: 1, maxLength: 320 },
    oauth2: {
      type: 'object', additionalProperties: false, required: ['provider'],
      properties: {
        provider: { type: 'string', enum: ['google', 'microsoft', 'custom'] },
        accessToken: { type: 'string', maxLength: 8192 },
        refreshToken: { type: 'string', maxLength: 8192 },
        expiresAt: { type: 'string', format: 'date-time' },
      },
    },
  },
} as const;

export const serverSettings = {
  type: 'object', additionalProperties: false, required: ['host', 'port', 'auth'],
  properties: {
    host: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.:\\[\\]-]+$' },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    secure: { type: 'boolean', default: true },
    // if/then/else rather than oneOf: a failed oneOf reports every branch's errors at once
    // ("must have required property 'user'" twice); this way the client hears the one problem
    auth: { type: 'object', if: { required: ['oauth2'] }, then: oauth2, else: password },
  },
} as const;

export const consentBody = {
  type: 'object', additionalProperties: false, required: ['imap'],
  properties: {
    imap: serverSettings,
    smtp: serverSettings,
    syncSince: { type: 'string', format: 'date-time' },
  },
} as const;

export const userBody = {
  type: 'object', additionalProperties: false, required: ['email'],
  properties: {
    email,
    aliases: { type: 'array', items: email, maxItems: 50, default: [] },
    name: { type: 'string', maxLength: 256 },
  },
} as const;

export const candidateBody = {
  type: 'object', additionalProperties: false, required: ['emails'],
  properties: {
    emails: { type: 'array', items: email, minItems: 0, maxItems: 50 },
    name: { type: 'string', maxLength: 256 },
  },
} as const;

export const outboundBody = {
  type: 'object', additionalProperties: false, required: ['userId', 'messageId'],
  properties: {
    userId: { type: 'string', pattern: ID_PATTERN },
    messageId: messageIdString,
    candidateIds: { type: 'array', items: { type: 'string', pattern: ID_PATTERN }, maxItems: 100, default: [] },
    subject: { type: 'string', maxLength: 998 },
  },
} as const;

export const pageQuery = {
  type: 'object', additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
    cursor: { type: 'string', maxLength: 200, pattern: '^[A-Za-z0-9_!.:-]*$' },
  },
} as const;

export const eventsQuery = {
  type: 'object', additionalProperties: false,
  properties: {
    after: { type: 'string', pattern: '^[0-9]{0,16}$' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    status: { type: 'string', enum: ['pending', 'delivered', 'failed', 'not_pushed'] },
  },
} as const;

/** What each pattern above means, for validation messages a person can act on. */
export const PATTERN_MEANINGS: Record<string, string> = {
  [ID_PATTERN]: 'must be 1 to 128 characters from A-Z, a-z, 0-9 and . _ : -',
  [email.pattern]: 'must be an email address like name@example.com',
  [messageIdString.pattern]: 'must be a Message-ID in angle brackets, like <id@host.example>',
  [serverSettings.properties.host.pattern]: 'must be a host name or an IP address',
};

export const errorResponse = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
      required: ['code', 'message'],
    },
  },
} as const;
