/**
 * The one registry of error codes. API codes are the contract of API.md; `MAILSYNC_ERR_*`
 * codes are internal (config, store, sync) and appear in logs and mailbox states.
 * A code, once published, is never reused for something else.
 */

export interface ErrorSpec {
  /** HTTP status when the error reaches the REST API. */
  status: number;
  /** Whether retrying the same operation later can succeed. */
  retryable: boolean;
  /** Default text for a person. */
  message: string;
}

export const API_ERRORS = {
  invalid_request: { status: 400, retryable: false, message: 'The request is not valid.' },
  unauthorized: { status: 401, retryable: false, message: 'A valid bearer token is required.' },
  forbidden: { status: 403, retryable: false, message: 'The acting user may not do this.' },
  not_found: { status: 404, retryable: false, message: 'Not found.' },
  conflict: { status: 409, retryable: false, message: 'The request conflicts with the current state.' },
  payload_too_large: { status: 413, retryable: false, message: 'The request body is too large.' },
  unprocessable: { status: 422, retryable: false, message: 'The request is well-formed but cannot be carried out.' },
  rate_limited: { status: 429, retryable: true, message: 'Too many requests.' },
  unavailable: { status: 503, retryable: true, message: 'The service is not ready.' },
  /** Added to the contract's list: a fault inside mailsync (the log has the details). */
  internal: { status: 500, retryable: true, message: 'Something went wrong inside mailsync.' },
} as const satisfies Record<string, ErrorSpec>;

export type ApiErrorCode = keyof typeof API_ERRORS;

export const INTERNAL_ERRORS = {
  MAILSYNC_ERR_CONFIG: { status: 500, retryable: false, message: 'The configuration is not valid.' },
  MAILSYNC_ERR_KEY: { status: 500, retryable: false, message: 'The encryption key is missing or not valid.' },
  MAILSYNC_ERR_DECRYPT: { status: 500, retryable: false, message: 'Stored secrets cannot be decrypted with this key.' },
  MAILSYNC_ERR_AUTH: { status: 500, retryable: false, message: 'The mail server refused the credentials.' },
  MAILSYNC_ERR_TLS: { status: 500, retryable: true, message: 'A secure connection to the mail server failed.' },
  MAILSYNC_ERR_UNREACHABLE: { status: 500, retryable: true, message: 'The mail server cannot be reached.' },
  MAILSYNC_ERR_INSECURE: { status: 500, retryable: false, message: 'The mail server offers no encryption and plain connections are not allowed.' },
  MAILSYNC_ERR_PROTOCOL: { status: 500, retryable: true, message: 'The mail server answered something unexpected.' },
  MAILSYNC_ERR_NO_FOLDER: { status: 500, retryable: true, message: 'A folder to sync was not found.' },
  MAILSYNC_ERR_PARSE: { status: 500, retryable: false, message: 'A message could not be parsed.' },
  MAILSYNC_ERR_BACKUP: { status: 500, retryable: false, message: 'A backup cannot be written or restored.' },
} as const satisfies Record<string, ErrorSpec>;

export type InternalErrorCode = keyof typeof INTERNAL_ERRORS;

/** An error the REST API turns into `{"error": {code, message, details}}`. */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ApiErrorCode, message?: string, details?: unknown) {
    super(message ?? API_ERRORS[code].message);
    this.name = 'ApiError';
    this.code = code;
    this.status = API_ERRORS[code].status;
    this.details = details;
  }
}

/** An error inside the daemon with a stable code, for logs and mailbox states. */
export class MailsyncError extends Error {
  readonly code: InternalErrorCode;
  readonly retryable: boolean;

  constructor(code: InternalErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? INTERNAL_ERRORS[code].message, options);
    this.name = 'MailsyncError';
    this.code = code;
    this.retryable = INTERNAL_ERRORS[code].retryable;
  }
}

/** The body of an error response, per API.md. */
export function errorBody(code: ApiErrorCode, message: string, details?: unknown): { error: { code: string; message: string; details?: unknown } } {
  return details === undefined ? { error: { code, message } } : { error: { code, message, details } };
}
