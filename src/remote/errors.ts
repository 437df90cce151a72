import { type ErrorCode, isErrorCode, RegistryError } from "../oci/errors.ts";

/**
 * A failure talking to another registry: what it answered (its spec error code when it sent one)
 * or the network error, the URL, and whether another attempt could succeed.
 */
export class UpstreamError extends RegistryError {
  readonly retryable: boolean;
  readonly upstreamStatus: number | undefined;
  readonly url: string;
  /** Milliseconds the upstream asked us to wait (429/503 Retry-After). */
  readonly retryAfter: number | undefined;
  /** The client already tried this request again as often as it may. */
  retried = false;

  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      url: string;
      upstreamStatus?: number;
      retryable: boolean;
      retryAfter?: number;
      cause?: unknown;
      status?: number;
      detail?: unknown;
    },
  ) {
    super(code, message, {
      status: opts.status ?? statusFor(code, opts.upstreamStatus),
      detail: opts.detail,
    });
    this.name = "UpstreamError";
    this.retryable = opts.retryable;
    this.upstreamStatus = opts.upstreamStatus;
    this.url = opts.url;
    this.retryAfter = opts.retryAfter;
    if (opts.cause !== undefined) (this as { cause?: unknown }).cause = opts.cause;
  }
}

function statusFor(code: ErrorCode, upstream: number | undefined): number {
  // A server error or network failure upstream is a bad gateway here, not our own 500.
  if (code === "INTERNAL_ERROR") return upstream === 504 ? 504 : 502;
  return upstream !== undefined && upstream >= 400 && upstream < 500 ? upstream : 502;
}

/** The first `{code, message}` of a spec error body, if the text is one. */
export function parseErrorBody(text: string): { code?: ErrorCode; message?: string; detail?: unknown } {
  try {
    const doc = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown; detail?: unknown }[] };
    const first = doc?.errors?.[0];
    if (!first) return {};
    const out: { code?: ErrorCode; message?: string; detail?: unknown } = {};
    // INTERNAL_ERROR is ours to give; an upstream's 500 says UNKNOWN or nothing useful.
    if (typeof first.code === "string" && first.code !== "INTERNAL_ERROR" && isErrorCode(first.code)) {
      out.code = first.code;
    }
    if (typeof first.message === "string") out.message = first.message;
    if (first.detail !== undefined) out.detail = first.detail;
    return out;
  } catch {
    return {};
  }
}

export function codeForStatus(status: number, notFound: ErrorCode): ErrorCode {
  if (status === 401) return "UNAUTHORIZED";
  if (status === 403) return "DENIED";
  if (status === 404) return notFound;
  if (status === 429) return "TOOMANYREQUESTS";
  if (status === 405) return "UNSUPPORTED";
  if (status === 416) return "RANGE_INVALID";
  if (status >= 400 && status < 500) return "MANIFEST_INVALID";
  return "INTERNAL_ERROR";
}
