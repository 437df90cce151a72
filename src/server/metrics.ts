import type Koa from "koa";
import type { EndpointKind, PrometheusMetrics } from "../metrics/prometheus.ts";
import { RegistryError } from "../oci/errors.ts";
import type { AccessState } from "./access.ts";
import type { Ctx } from "./context.ts";
import type { Endpoint } from "./routes.ts";

function kindOf(endpoint: Endpoint): EndpointKind {
  const family = endpoint.split(".")[0]!;
  return family === "manifest" ||
    family === "blob" ||
    family === "upload" ||
    family === "tags" ||
    family === "catalog" ||
    family === "referrers"
    ? family
    : "other";
}

const writeMethods = new Set(["PUT", "POST", "PATCH", "DELETE"]);
const bodyMethods = new Set(["PUT", "POST", "PATCH"]);

/**
 * Counts every request once its response is done (or its client gone): kind, method, status,
 * duration and bytes. Unknown methods are labelled `other` so a client cannot mint label values.
 */
export function requestMetrics(metrics: PrometheusMetrics): Koa.Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const socket = ctx.req.socket;
    const readBefore = socket.bytesRead;
    const declared = ctx.get("Content-Length");
    // Listening before the handlers run: an upload whose client goes away mid-body fails the handler
    // only after the response has closed, and a listener added then would never be called.
    ctx.res.once("close", () => {
      // Dispatch records the endpoint it matched; matching the path again here would double the work.
      const endpoint = (ctx.state as { endpoint?: Endpoint }).endpoint;
      const kind = endpoint ? kindOf(endpoint) : "other";
      // 499, as nginx logs it: the client went away before any answer was sent.
      const status = ctx.res.headersSent ? ctx.res.statusCode : 499;
      // What the socket read meanwhile is the body (and a chunked one's framing); a declared length
      // counts once the body arrived whole, since a first packet may carry it in with the headers.
      const read = Math.max(0, socket.bytesRead - readBefore);
      const bytesIn = declared
        ? ctx.req.complete
          ? Number(declared) || 0
          : Math.min(Number(declared) || 0, read)
        : bodyMethods.has(ctx.method)
          ? read
          : 0;
      const finished = ctx.res.writableFinished && ctx.method !== "HEAD";
      metrics.request({
        kind,
        method: knownMethods.has(ctx.method) ? ctx.method : "other",
        status,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        bytesIn,
        bytesOut: finished ? Number(ctx.res.getHeader("content-length") ?? 0) || 0 : 0,
      });
    });
    await next();
    // Before the answer reaches the client, so a scrape it sends next already recounts.
    if (writeMethods.has(ctx.method) && ctx.status < 400) metrics.storageChanged();
  };
}

const knownMethods = new Set(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]);

/**
 * GET on the metrics path: the Prometheus text, to callers `accessControl.metrics` admits (zot's
 * rules: see AccessPolicy.mayReadMetrics). Anonymous callers refused get 401 with a challenge, so a
 * scraper learns to send credentials; signed-in ones 403.
 */
export async function serveMetrics(ctx: Ctx, metrics: PrometheusMetrics, access: AccessState): Promise<void> {
  const who = await access.identify(ctx);
  if (!access.policy.mayReadMetrics(who)) {
    if (!who && access.accounts) throw access.unauthorized("authentication required to read the metrics");
    throw new RegistryError(
      "DENIED",
      who
        ? `user '${who.user}' may not read the metrics: name the user in http.accessControl.metrics.users`
        : 'anonymous access may not read the metrics: set http.accessControl.metrics.anonymousPolicy to ["read"], or sign in',
    );
  }
  const { contentType, body } = await metrics.text();
  ctx.set("Cache-Control", "no-store");
  ctx.type = contentType;
  ctx.body = body;
}
