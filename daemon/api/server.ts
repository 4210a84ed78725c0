import crypto from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { Logger } from 'pino';
import { ApiError, errorBody, type ApiErrorCode } from '../errors.js';
import type { Config } from '../config/load.js';
import type { Accounts } from '../store/accounts.js';
import type { Threads } from '../store/threads.js';
import type { Outbox } from '../store/outbox.js';
import type { Store } from '../store/store.js';
import type { Role } from '../store/records.js';
import type { SyncSupervisor } from '../sync/supervisor.js';
import type { ImportRunner } from '../sync/import-job.js';
import { registerImportRoutes } from './routes-imports.js';
import { registerQuarantineRoutes } from './routes-quarantine.js';
import type { Quarantine } from '../store/quarantine.js';
import type { KeyRotation } from '../store/key-rotation.js';
import { registerKeyRoutes } from './routes-keys.js';
import type { WebhookDispatcher } from '../events/dispatcher.js';
import type { Metrics } from '../ops/metrics.js';
import type { LoginAuth } from '../sync/oauth2-tokens.js';
import { ID_PATTERN, PATTERN_MEANINGS } from './schemas.js';
import type { Actor } from './acl.js';
import { registerUserRoutes } from './routes-users.js';
import { registerCandidateRoutes } from './routes-candidates.js';
import { registerThreadRoutes } from './routes-threads.js';
import { registerEventRoutes } from './routes-events.js';
import { registerAdminRoutes } from './routes-admin.js';
import { registerStatusRoutes } from './routes-status.js';
import { registerAuditRoutes } from './routes-audit.js';
import { AuthFailureLimiter } from './auth-limiter.js';
import { registerErasureRoutes } from './routes-erasure.js';
import type { CandidateErasure } from '../store/erasure.js';
import type { Audit } from '../store/audit.js';

export interface ApiContext {
  config: Config;
  store: Store;
  accounts: Accounts;
  threads: Threads;
  outbox: Outbox;
  supervisor: SyncSupervisor;
  dispatcher: WebhookDispatcher | null;
  metrics: Metrics;
  normalise: (address: string) => string;
  isReady: () => boolean;
  /** Relay hooks added by the SMTP module when it runs. */
  log: Logger;
  /** Messages waiting in the relay's queue, when the relay runs (status page, admin API). */
  relayQueueDepth?: () => Promise<number> | number;
  /** Imports of older conversations and links by Message-ID. */
  imports: ImportRunner;
  quarantine: Quarantine;
  /** The audit log of privacy actions, written in the batch of each change. */
  audit: Audit;
  /** Data-protection erasures of candidates. */
  erasure: CandidateErasure;
  /** Key status and rotation (`mailsync keys`). */
  keys: KeyRotation;
  /** Fresh IMAP logins (OAuth2 tokens refreshed), for `mailsync doctor` through the API; `forget` on revocation. */
  logins?: { login(userId: string, protocol: 'imap'): Promise<{ auth: LoginAuth }>; forget(userId: string): void };
  /** The relay's queue, when the relay runs: a revocation fails the messages that would go out with the user's login. */
  relay?: { failUser(userId: string, reason: string): Promise<number> };
}

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor;
    /** Id of the API token the request used (`tok_…`), for the audit; never the token. */
    client: string;
  }
}

// ajv-formats is CommonJS: its default export arrives wrapped under ESM
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (ajv: Ajv) => Ajv;

const ROLES: Role[] = ['user', 'admin', 'super_admin'];
const ID_RE = new RegExp(ID_PATTERN);

/** Constant-time comparison that does not leak the length of the expected token. */
export function tokenMatches(given: string, tokens: readonly string[]): boolean {
  const g = crypto.createHash('sha256').update(given).digest();
  let ok = false;
  for (const t of tokens) ok = crypto.timingSafeEqual(g, crypto.createHash('sha256').update(t).digest()) || ok;
  return ok;
}

/**
 * A stable id for an API token, for the audit log and the startup log: a keyed hash (the key
 * comes from the master key), so the id says which token acted without letting anyone who
 * reads it test guesses of the token.
 */
export function tokenId(store: Pick<Store, 'idHasher'>, token: string): string {
  return `tok_${store.idHasher.hash(`api-token:${token}`).slice(0, 12)}`;
}

export function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1]! : null;
}

/**
 * Whether a request is for /v1 and needs the bearer token. Decided by the route it matched
 * (what the router decoded, e.g. `/%761/events` routes to `/v1/events`), and for unmatched
 * URLs by the decoded path, so no spelling of a /v1 path gets past the check.
 */
function needsToken(req: FastifyRequest): boolean {
  const route = req.routeOptions.url;
  if (route !== undefined && (route === '/v1' || route.startsWith('/v1/'))) return true;
  let path = req.url.split('?')[0] ?? '';
  try {
    path = decodeURIComponent(path);
  } catch {
    return true;
  }
  path = path.replace(/\/{2,}/g, '/').toLowerCase();
  return path === '/v1' || path.startsWith('/v1/');
}

export async function buildApi(ctx: ApiContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: ctx.config.api.bodyLimitBytes,
    trustProxy: ctx.config.api.trustProxy,
    // ids are up to 128 characters and message keys longer; over-long ones must reach the
    // schema (400 naming the problem) instead of fastify's default 100-character 404
    routerOptions: { maxParamLength: 512 },
    // a bad URL (bad percent-encoding, an over-long segment) still gets the contract's error shape
    frameworkErrors: (err, _req, reply) => {
      const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path segment is longer than 512 characters.' : 'The URL is not valid (bad percent-encoding?).';
      void (reply as unknown as FastifyReply).status(400).send(errorBody('invalid_request', message));
    },
  });
  // Query strings and path parameters are text, so they are coerced to the schema's types
  // (`?limit=50`); JSON bodies are not: `"name": true` is a client bug to report, not a string.
  const ajvFor = (coerce: boolean) => {
    const ajv = new Ajv({ removeAdditional: false, coerceTypes: coerce ? 'array' : false, useDefaults: true, allErrors: false, strict: false });
    addFormats(ajv);
    return ajv;
  };
  const coercing = ajvFor(true);
  const strict = ajvFor(false);
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? strict : coercing).compile(schema));

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'mailsync', version: '1', description: 'The contract between mailsync and the applicant tracking system (API.md).' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  app.decorateRequest('actor', null as unknown as Actor);
  app.decorateRequest('client', '');

  const limiter = new AuthFailureLimiter({ maxFailures: ctx.config.api.authFailures.maxFailures, windowMs: ctx.config.api.authFailures.windowSeconds * 1000 });
  /** Refuses an address that failed too often, before its token is even looked at. */
  const checkBlocked = (req: FastifyRequest, reply: FastifyReply) => {
    const ms = limiter.blockedFor(req.ip);
    if (!ms) return;
    const seconds = Math.ceil(ms / 1000);
    reply.header('retry-after', String(seconds));
    throw new ApiError('rate_limited', `Too many failed authentications from this address: try again in ${seconds} s.`);
  };
  const authFailed = (req: FastifyRequest, message: string): never => {
    ctx.metrics.apiAuthFailures.inc();
    const blockedMs = limiter.fail(req.ip);
    if (blockedMs) {
      ctx.metrics.apiAuthBlocks.inc();
      req.log.warn({ remoteAddress: req.ip, blockedSeconds: Math.ceil(blockedMs / 1000) }, 'too many failed authentications: address refused for a while');
    }
    throw new ApiError('unauthorized', message);
  };

  app.addHook('onRequest', async (req, reply) => {
    if (!needsToken(req)) return;
    checkBlocked(req, reply);
    const token = bearer(req);
    if (!token || !tokenMatches(token, ctx.config.api.tokens)) authFailed(req, 'A valid bearer token is required (Authorization: Bearer <token>).');
    const given = token as string;
    req.client = tokenId(ctx.store, given);
    const actingUser = req.headers['x-acting-user'];
    const actingRole = req.headers['x-acting-role'];
    if (actingUser !== undefined && (typeof actingUser !== 'string' || !ID_RE.test(actingUser))) {
      throw new ApiError('invalid_request', 'X-Acting-User must be a user id of 1 to 128 characters from [A-Za-z0-9._:-].');
    }
    if (actingRole !== undefined && (typeof actingRole !== 'string' || !ROLES.includes(actingRole as Role))) {
      throw new ApiError('invalid_request', 'X-Acting-Role must be one of user, admin, super_admin.');
    }
    // a role belongs to a person: "admin" claimed for nobody would see every secret thread
    if (actingRole !== undefined && actingUser === undefined) {
      throw new ApiError('invalid_request', 'X-Acting-Role needs X-Acting-User: a role is the role of the user the request is made for. Leave both out when the ATS acts for no person.');
    }
    const user = actingUser ? await ctx.accounts.getUser(actingUser) : undefined;
    req.actor = {
      userId: (actingUser as string | undefined) ?? null,
      role: (actingRole as Role | undefined) ?? 'user',
      addresses: new Set(user ? ctx.accounts.userAddresses(user) : []),
    };
  });

  app.setErrorHandler((err: FastifyError | ApiError, req, reply) => {
    if (err instanceof ApiError) {
      return reply.status(err.status).send(errorBody(err.code, err.message, err.details));
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const problemOf = (v: (typeof fe.validation)[number]) => {
        const pattern = v.keyword === 'pattern' ? (v.params as { pattern?: string }).pattern : undefined;
        return (pattern && PATTERN_MEANINGS[pattern]) || v.message;
      };
      const details = fe.validation.map((v) => ({ field: `${fe.validationContext ?? 'body'}${v.instancePath}`.replace(/\//g, '.'), problem: problemOf(v), ...(v.params && 'additionalProperty' in v.params ? { unknownField: v.params.additionalProperty } : {}) }));
      const first = details[0]!;
      const text = first.unknownField ? `${first.field}: unknown field "${String(first.unknownField)}"` : `${first.field} ${first.problem}`;
      return reply.status(400).send(errorBody('invalid_request', text, details));
    }
    const map: Record<string, ApiErrorCode> = {
      FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'invalid_request',
      FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
      FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
      FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
    };
    const code = (fe.code && map[fe.code]) || (fe.statusCode === 400 ? 'invalid_request' : undefined);
    if (code) {
      const message = code === 'payload_too_large'
        ? `The request body is larger than ${ctx.config.api.bodyLimitBytes} bytes.`
        : fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? `Send the body as JSON with Content-Type: application/json (got ${JSON.stringify(req.headers['content-type'] ?? 'none')}).`
          : fe.message.replace(/^FST_\w+:\s*/, '');
      return reply.status(code === 'payload_too_large' ? 413 : 400).send(errorBody(code, message));
    }
    req.log.error({ err }, 'request failed');
    return reply.status(500).send(errorBody('internal', 'Something went wrong inside mailsync; the log has the details.'));
  });

  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send(errorBody('not_found', `No route ${req.method} ${req.url.split('?')[0]}.`));
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    if (!ctx.isReady()) return reply.status(503).send(errorBody('unavailable', 'mailsync is starting or stopping.'));
    return { status: 'ready', store: 'open', workers: ctx.supervisor.size };
  });
  app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
    if (ctx.config.api.metricsToken) {
      checkBlocked(req, reply);
      const token = bearer(req);
      if (!token || !tokenMatches(token, [ctx.config.api.metricsToken])) authFailed(req, 'A valid bearer token is required for /metrics (api.metricsToken).');
    }
    reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  registerUserRoutes(app, ctx);
  registerCandidateRoutes(app, ctx);
  registerThreadRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerAdminRoutes(app, ctx);
  registerKeyRoutes(app, ctx);
  registerStatusRoutes(app, ctx);
  registerImportRoutes(app, ctx);
  registerQuarantineRoutes(app, ctx);
  registerAuditRoutes(app, ctx);
  registerErasureRoutes(app, ctx);
  return app;
}
