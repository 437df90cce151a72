/** How a remote client waits between attempts. Times in milliseconds. */
export interface RetryPolicy {
  /** Attempts after the first; 0 disables retrying. */
  maxRetries: number;
  /** The unit every wait is made of (see `backoff`). */
  retryDelay: number;
  /** No single wait is longer than this (Retry-After up to `maxRetryAfter` still wins). */
  maxRetryDelay: number;
  /** A `Retry-After` longer than this is not waited for: the request fails at once with the wait named. */
  maxRetryAfter: number;
  /**
   * `jittered`: retry n (from 0) waits a random time between half and all of retryDelay × 2^n, so
   * clients that failed together do not come back together. `doubling`: what zot does (its
   * regclient library): retry n (from 1) waits exactly retryDelay × 2^n, so the first wait is already
   * twice retryDelay, and a maxRetryDelay equal to retryDelay is a fixed interval.
   */
  backoff: "jittered" | "doubling";
}

export const defaultRetryPolicy: RetryPolicy = {
  maxRetries: 3,
  retryDelay: 500,
  maxRetryDelay: 30_000,
  maxRetryAfter: 120_000,
  backoff: "jittered",
};

/** The wait before retry `attempt` (0 for the first retry). */
export function backoffDelay(
  policy: Pick<RetryPolicy, "retryDelay" | "maxRetryDelay" | "backoff">,
  attempt: number,
  random: () => number = Math.random,
): number {
  if (policy.backoff === "doubling") {
    return Math.min(policy.maxRetryDelay, policy.retryDelay * 2 ** (attempt + 1));
  }
  const step = Math.min(policy.maxRetryDelay, policy.retryDelay * 2 ** attempt);
  return Math.round(step / 2 + (random() * step) / 2);
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === "") return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

const transientCodes = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

/** A network-level failure that another attempt may not meet: resets, refusals, time-outs, cut bodies. */
export function isTransientNetworkError(err: unknown): boolean {
  if ((err as { retryable?: unknown })?.retryable === true) return true;
  if ((err as { retryable?: unknown })?.retryable === false) return false;
  return (
    codesOf(err).some((c) => transientCodes.has(c)) || /other side closed|socket hang up/i.test(String(err))
  );
}

/**
 * A TLS handshake that met a plain-HTTP server: OpenSSL reads the server's "HTTP/1.1 400" as a
 * record header with a "wrong version number". Retrying cannot help; the URL scheme or the client's
 * settings must change.
 */
export function isPlainHttpAnswer(err: unknown): boolean {
  return (
    codesOf(err).includes("ERR_SSL_WRONG_VERSION_NUMBER") ||
    /ssl3_get_record:wrong version number/.test(describeNetworkError(err))
  );
}

/** An HTTP status worth another attempt: server errors except 501, 408 and 429. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** Words for a network error, with the code a person can search for. */
export function describeNetworkError(err: unknown): string {
  const codes = codesOf(err);
  const msg = (err as Error)?.message ?? String(err);
  const cause = (err as { cause?: Error })?.cause?.message;
  const parts = [msg];
  if (cause && cause !== msg) parts.push(cause);
  if (codes.length && !parts.some((p) => p.includes(codes[0]!))) parts.push(codes[0]!);
  return parts.join(": ");
}
