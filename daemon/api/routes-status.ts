import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cookieValue, issueSession, PAGE_HEADERS, renderLogin, renderStatus, SESSION_COOKIE, SESSION_SECONDS, sessionValid } from '../ops/status-page.js';
import { statusSnapshot } from '../ops/status.js';
import { statusSources } from './routes-admin.js';
import { bearer, tokenMatches, type ApiContext } from './server.js';

/** A page asked to reload faster than this would put more load on the store than it is worth. */
const MIN_REFRESH_SECONDS = 1;
const DEFAULT_REFRESH_SECONDS = 10;

/** A refresh interval asked for in the query or the login form, when it is a sensible one. */
function refreshOf(value: unknown): number | null {
  const n = Number(value);
  return Number.isInteger(n) && n >= MIN_REFRESH_SECONDS && n <= 3_600 ? n : null;
}

/** The token-protected status page: a login form that sets an HttpOnly session cookie. */
export function registerStatusRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const tokens = ctx.config.api.tokens;
  const cookie = (req: FastifyRequest, value: string, maxAge: number) =>
    `${SESSION_COOKIE}=${value}; Path=/status; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${req.protocol === 'https' ? '; Secure' : ''}`;
  const send = (reply: FastifyReply, status: number, html: string) => reply.status(status).headers(PAGE_HEADERS).send(html);

  app.register(async (scope) => {
    // the login form posts as a browser does; parsed here only, the API itself takes JSON
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4_096 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });

    scope.get<{ Querystring: { refresh?: string } }>('/status', { schema: { hide: true } }, async (req, reply) => {
      const signedIn = sessionValid(cookieValue(req.headers.cookie, SESSION_COOKIE), tokens) || tokenMatches(bearer(req) ?? '', tokens);
      const refresh = refreshOf(req.query.refresh);
      if (!signedIn) return send(reply, 401, renderLogin(undefined, refresh ?? undefined));
      return send(reply, 200, renderStatus(await statusSnapshot(statusSources(ctx)), refresh ?? DEFAULT_REFRESH_SECONDS));
    });

    scope.post<{ Body: { token?: string; refresh?: string } }>('/status/login', { schema: { hide: true } }, async (req, reply) => {
      const token = typeof req.body?.token === 'string' ? req.body.token : '';
      const refresh = refreshOf(req.body?.refresh);
      if (!token || !tokenMatches(token, tokens)) {
        ctx.metrics.apiAuthFailures.inc();
        return send(reply, 401, renderLogin('That token is not accepted.', refresh ?? undefined));
      }
      // 303: the browser follows with a GET, so a reload does not post the token again
      return reply.status(303).header('set-cookie', cookie(req, issueSession(token), SESSION_SECONDS))
        .header('location', refresh ? `/status?refresh=${refresh}` : '/status').send();
    });

    scope.post('/status/logout', { schema: { hide: true } }, async (req, reply) =>
      reply.status(303).header('set-cookie', cookie(req, '', 0)).header('location', '/status').send());
  });
}
