import type { BasicCredentials } from "../remote/credentials.ts";
import type { RedirectHop } from "../remote/http.ts";
import { RemoteRegistry } from "../remote/remote.ts";
import type { TlsMaterial } from "../remote/tls.ts";

/** How to reach the registry under test; every client validate makes shares these. */
export interface Connection {
  /** `http(s)://host[:port]`, no path. */
  url: string;
  tlsVerify: boolean;
  tls?: TlsMaterial;
  /** Attempts after the first for a request that failed in a way that may pass. */
  retries: number;
}

/** What the docker CLI sends: Kagami and others answer it with a Bearer challenge, not Basic. */
export const dockerUserAgent = "docker/27.0.0 go/go1.22 os/linux arch/amd64 (kagami-validate)";
export const validateUserAgent = "kagami-validate";

/**
 * A client of the registry under test, as one account (or anonymous) sees it. Redirects are followed
 * as a container runtime follows them, and each hop is reported to `onRedirect`.
 */
export function openClient(
  c: Connection,
  opts: { credentials?: BasicCredentials; userAgent?: string; onRedirect?: (hop: RedirectHop) => void } = {},
): RemoteRegistry {
  return new RemoteRegistry({
    urls: [c.url],
    tlsVerify: c.tlsVerify,
    ...(c.tls ? { tls: c.tls } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.onRedirect ? { onRedirect: opts.onRedirect } : {}),
    userAgent: opts.userAgent ?? validateUserAgent,
    maxRetries: c.retries,
    retryDelay: 200,
    maxRetryDelay: 2000,
    // The registry is never taken for Docker Hub: names are used exactly as given.
    dockerHub: false,
  });
}
