import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { cookieValue, issueSession, PAGE_HEADERS, renderLogin, renderStatus, SESSION_COOKIE, SESSION_SECONDS, sessionValid } from '../ops/status-page.js';
import { statusSnapshot } from '../ops/status.js';
import { statusSources } from './routes-admin.js';
import { tokenMatches, type ApiContext } from './server.js';

/** A page asked to reload faster than this would put more load on the store than it is worth. */
const MIN_REFRESH_SECONDS = 1;
const DEFAULT_REFRESH_SECONDS = 10;

function bearer(req: FastifyRequest): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
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
      if (!signedIn) return send(reply, 401, renderLogin());
      const asked = Number(req.query.refresh);
      const refresh = Number.isInteger(asked) && asked >= MIN_REFRESH_SECONDS && asked <= 3_600 ? asked : DEFAULT_REFRESH_SECONDS;
      return send(reply, 200, renderStatus(await statusSnapshot(statusSources(ctx)), refresh));
    });

    scope.post<{ Body: { token?: string } }>('/status/login', { schema: { hide: true } }, async (req, reply) => {
      const token = typeof req.body?.token === 'string' ? req.body.token : '';
      if (!token || !tokenMatches(token, tokens)) {
        ctx.metrics.apiAuthFailures.inc();
        return send(reply, 401, renderLogin('That token is not accepted.'));
      }
      // 303: the browser follows with a GET, so a reload does not post the token again
      return reply.status(303).header('set-cookie', cookie(req, issueSession(token), SESSION_SECONDS)).header('location', '/status').send();
    });

    scope.post('/status/logout', { schema: { hide: true } }, async (req, reply) =>
      reply.status(303).header('set-cookie', cookie(req, '', 0)).header('location', '/status').send());
  });
}
