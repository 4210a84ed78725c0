// A fake OAuth2 provider for tests: the token endpoint (refresh grant) the daemon calls, and
// the introspection endpoint Dovecot's oauth2 passdb calls for every XOAUTH2 login. It stands
// for Google or Microsoft, which tests cannot reach; Dovecot itself is real.
import crypto from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { noteSecret } from '../helpers/log-capture.js'

export interface FakeGrant {
  username: string
  refreshToken: string
}

export interface TokenRequest {
  grantType: string | null
  refreshToken: string | null
  clientId: string | null
  clientSecret: string | null
  at: number
}

export interface FakeProviderOptions {
  /** Lifetime of issued access tokens, in seconds. */
  expiresIn?: number
  /** Issue a new refresh token with every refresh and stop accepting the old one. */
  rotateRefreshTokens?: boolean
  clientId?: string
  clientSecret?: string
}

export class FakeOAuth2Provider {
  readonly tokenRequests: TokenRequest[] = []
  readonly introspections: Array<{ token: string; active: boolean; at: number }> = []
  /** access token → user and expiry (epoch ms) */
  readonly #access = new Map<string, { username: string; expiresAt: number }>()
  /** refresh token → user */
  readonly #refresh = new Map<string, string>()
  readonly #issuedRefresh: Array<[string, string]> = []
  readonly #server: http.Server
  readonly opts: Required<FakeProviderOptions>
  /** When set, the token endpoint answers every request with this status and body (e.g. an outage). */
  failWith: { status: number; body: unknown } | null = null
  /** Delay before the token endpoint answers, to make concurrent refreshes overlap. */
  tokenDelayMs = 0
  url = ''

  constructor(opts: FakeProviderOptions = {}) {
    this.opts = { expiresIn: 3600, rotateRefreshTokens: false, clientId: 'mailsync-test-client', clientSecret: 'client-secret-test', ...opts }
    noteSecret('oauth client secret', this.opts.clientSecret)
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
        const send = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
        }
        if (req.url === '/introspect') {
          const token = form.get('token') ?? ''
          const a = this.#access.get(token)
          const active = !!a && a.expiresAt > Date.now()
          this.introspections.push({ token, active, at: Date.now() })
          return send(200, active ? { active: true, username: a!.username } : { active: false })
        }
        if (req.url === '/token') {
          this.tokenRequests.push({ grantType: form.get('grant_type'), refreshToken: form.get('refresh_token'), clientId: form.get('client_id'), clientSecret: form.get('client_secret'), at: Date.now() })
          setTimeout(() => {
            if (this.failWith) return send(this.failWith.status, this.failWith.body)
            if (form.get('client_id') !== this.opts.clientId || form.get('client_secret') !== this.opts.clientSecret) return send(401, { error: 'invalid_client' })
            if (form.get('grant_type') !== 'refresh_token') return send(400, { error: 'unsupported_grant_type' })
            const username = this.#refresh.get(form.get('refresh_token') ?? '')
            if (!username) return send(400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' })
            const body: Record<string, unknown> = { access_token: this.issueAccessToken(username), token_type: 'Bearer', expires_in: this.opts.expiresIn }
            if (this.opts.rotateRefreshTokens) {
              this.#refresh.delete(form.get('refresh_token')!)
              body.refresh_token = this.grant(username).refreshToken
            }
            send(200, body)
          }, this.tokenDelayMs)
          return
        }
        send(404, { error: 'not_found' })
      })
    })
  }

  async start(t: Test): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
    t.teardown(() => new Promise<void>((r) => {
      this.#server.closeAllConnections()
      this.#server.close(() => r())
    }))
    return this
  }

  get tokenUrl(): string {
    return `${this.url}/token`
  }

  get introspectionUrl(): string {
    return `${this.url}/introspect`
  }

  /** A new refresh token for a user (what the consent screen hands the ATS). */
  grant(username: string): FakeGrant {
    const refreshToken = `rt-${crypto.randomBytes(12).toString('hex')}`
    noteSecret('oauth refresh token', refreshToken)
    this.#refresh.set(refreshToken, username)
    this.#issuedRefresh.push([refreshToken, username])
    return { username, refreshToken }
  }

  issueAccessToken(username: string, expiresIn = this.opts.expiresIn): string {
    const token = `at-${crypto.randomBytes(12).toString('hex')}`
    noteSecret('oauth access token', token)
    this.#access.set(token, { username, expiresAt: Date.now() + expiresIn * 1000 })
    return token
  }

  /** The user revoked the app: refresh and access tokens stop working. */
  revoke(username: string): void {
    for (const [k, v] of this.#refresh) if (v === username) this.#refresh.delete(k)
    for (const [k, v] of this.#access) if (v.username === username) this.#access.delete(k)
  }

  /** Every access token ever issued to a user, live or expired. */
  accessTokensOf(username: string): string[] {
    return [...this.#access].filter(([, v]) => v.username === username).map(([k]) => k)
  }

  /** Every refresh token ever handed out for a user, rotated ones included. */
  allRefreshTokensOf(username: string): string[] {
    return this.#issuedRefresh.filter(([, v]) => v === username).map(([k]) => k)
  }

  refreshTokensOf(username: string): string[] {
    return [...this.#refresh].filter(([, v]) => v === username).map(([k]) => k)
  }
}
