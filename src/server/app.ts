import { randomUUID } from "node:crypto";
import Router from "@koa/router";
import Koa from "koa";
import type { Logger } from "pino";
import { RegistryError } from "../oci/errors.ts";
import { assertValidName } from "../oci/names.ts";
import { isStorageFull, storageFullError } from "../store/storage-full.ts";
import { underPrefix } from "./artifacts.ts";
import { redirectToBlobCopy } from "./blob-redirect.ts";
import { blobHandlers } from "./blobs.ts";
import type { AppDeps, Ctx } from "./context.ts";
import { listingHandlers } from "./listing.ts";
import { manifestHandlers } from "./manifests.ts";
import { requestMetrics, serveMetrics } from "./metrics.ts";
import { refuseWriteIntoMirror } from "./mirror-writes.ts";
import { nsRepository } from "./ns.ts";
import { type Endpoint, matchRoute } from "./routes.ts";
import { uploadHandlers } from "./uploads.ts";

type Handler = (ctx: Ctx) => Promise<void> | void;

function isClientAbort(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return (
    code === "ECONNRESET" || code === "ERR_STREAM_PREMATURE_CLOSE" || (err as Error)?.message === "aborted"
  );
}

/**
 * What every Kagami front answers with: a request log line with an id, and errors as the spec's JSON
 * (anything unexpected a logged 500 without internals). The registry and the redirector build on it.
 */
export function createBaseApp(logger: Logger, before: Koa.Middleware[] = []): Koa {
  const app = new Koa();
  app.proxy = false;
  // Access log and request id.
  app.use(async (ctx, next) => {
    const started = process.hrtime.bigint();
    const id = ctx.get("X-Request-Id") || randomUUID();
    ctx.set("X-Request-Id", id);
    // Read while the request is alive: once its socket is destroyed (a client gone, a failed body),
    // ctx.ip throws, and a throw in a 'close' listener would take the whole process down.
    const remote = ctx.ip;
    const bytesIn = Number(ctx.get("Content-Length") || 0);
    // Listening before the handlers run: a client that goes away mid-body fails the handler only
    // after the response has closed, and a listener added then would never log the request.
    ctx.res.once("close", () => {
      try {
        logger.info(
          {
            reqId: id,
            method: ctx.method,
            path: ctx.path,
            // 499, as nginx logs it: the client went away before any answer was sent.
            status: ctx.res.headersSent ? ctx.res.statusCode : 499,
            bytesOut: ctx.response.length ?? 0,
            bytesIn,
            durationMs: Number(process.hrtime.bigint() - started) / 1e6,
            remote,
            // Who the access rules saw: absent for anonymous callers and requests that never reached them.
            user: (ctx.state as Partial<Ctx["state"]>).identity?.user,
            aborted: !ctx.res.writableFinished,
          },
          "request",
        );
      } catch (err) {
        logger.warn({ err, reqId: id }, "access log line failed");
      }
    });
    await next();
  });

  // Fronts served before the registry's headers and JSON errors (release files answer plain HTTP).
  for (const mw of before) app.use(mw);

  // Spec errors as JSON; anything unexpected is a logged 500 without internals in the body.
  app.use(async (ctx, next) => {
    ctx.set("Docker-Distribution-API-Version", "registry/2.0");
    try {
      await next();
    } catch (caught) {
      const err = isStorageFull(caught)
        ? storageFullError(
            caught,
            ctx.path.includes("/blobs/uploads/") ? "BLOB_UPLOAD_INVALID" : "INTERNAL_ERROR",
          )
        : caught;
      if (err instanceof RegistryError) {
        ctx.status = err.status;
        for (const [k, v] of Object.entries(err.headers)) ctx.set(k, v);
        ctx.body = err.toBody();
        if (err.status >= 500)
          logger.error({ err, cause: err === caught ? undefined : caught }, "request failed");
        return;
      }
      if (isClientAbort(err)) {
        logger.debug({ err: (err as Error).message, path: ctx.path }, "client went away");
        ctx.status = 400;
        ctx.body = new RegistryError("BLOB_UPLOAD_INVALID", "request body ended early").toBody();
        return;
      }
      logger.error({ err, path: ctx.path, method: ctx.method }, "internal error");
      ctx.status = 500;
      ctx.body = new RegistryError("INTERNAL_ERROR", "internal error; see the server log").toBody();
    }
  });
  app.on("error", (err: unknown) => {
    if (!isClientAbort(err)) logger.warn({ err }, "response error");
  });
  return app;
}

/** Release files below their prefix: plain HTTP, none of the registry's headers or JSON errors. */
export function artifactFront(files: AppDeps["artifacts"]): Koa.Middleware[] {
  if (files?.prefix === undefined) return [];
  const prefix = files.prefix;
  return [
    async (ctx, next) => {
      if (!underPrefix(ctx.path, prefix)) return next();
      ctx.respond = false;
      await files.handle(ctx.req, ctx.res);
    },
  ];
}

/** The Koa application: distribution-spec routes over the local registry. */
export function createApp(deps: AppDeps): Koa {
  const { logger } = deps;
  const app = createBaseApp(logger, [requestMetrics(deps.metrics), ...artifactFront(deps.artifacts)]);
  const canRead = (ctx: Ctx, repo: string) => ctx.state.canRead(repo);

  const m = manifestHandlers(deps);
  const b = blobHandlers(deps);
  const u = uploadHandlers(deps, canRead);
  const l = listingHandlers(deps, canRead);
  const handlers: Record<Endpoint, Handler> = {
    base: (ctx) => {
      ctx.body = {};
    },
    catalog: l.catalog,
    tags: l.tags,
    "manifest.head": m.head,
    "manifest.get": m.get,
    "manifest.put": m.put,
    "manifest.delete": m.delete,
    "blob.head": b.head,
    "blob.get": b.get,
    "blob.delete": b.delete,
    "upload.start": u.start,
    "upload.status": u.status,
    "upload.patch": u.patch,
    "upload.finish": u.finish,
    "upload.cancel": u.cancel,
    referrers: l.referrers,
  };

  const router = new Router();
  router.get("/_kagami/health", (ctx) => {
    ctx.body = { status: "ok" };
  });
  // zot's probes; open to all, as zot's are: a kubelet or a HEALTHCHECK sends no credentials.
  const answer = (ctx: Koa.Context, a: { status: number; body: unknown }) => {
    ctx.set("Cache-Control", "no-store");
    ctx.status = a.status;
    ctx.body = a.body;
  };
  router.get("/livez", (ctx) => answer(ctx, deps.health.live()));
  router.get("/startupz", (ctx) => answer(ctx, deps.health.startup()));
  router.get("/readyz", async (ctx) => answer(ctx, await deps.health.ready()));
  const metricsPath = deps.config.metrics?.path;
  if (metricsPath !== undefined) {
    // Compared as a literal: a router pattern would read ':' or '(' in the configured path as syntax,
    // failing at start or answering paths the operator never named.
    app.use(async (ctx, next) => {
      if (ctx.path !== metricsPath || (ctx.method !== "GET" && ctx.method !== "HEAD")) return next();
      await serveMetrics(ctx as Ctx, deps.metrics, deps.access());
    });
  }
  router.get("/_kagami/token", (ctx) => deps.access().issueToken(ctx as Ctx));
  router.get("/_kagami/sync", async (ctx) => {
    const access = deps.access();
    // Upstream URLs and errors are for operators: where accounts exist, only signed-in callers see them.
    if (access.accounts && !(await access.identify(ctx as Ctx)))
      throw access.unauthorized("authentication required");
    const mirror = deps.mirror();
    const sync = deps.sync();
    ctx.body = {
      enabled: mirror !== undefined,
      inflightBlobs: mirror?.activeFetches ?? 0,
      upstreams: (mirror?.config.registries ?? []).map((r, i) => ({
        urls: r.urls,
        onDemand: r.onDemand,
        pollInterval: r.pollIntervalMs,
        schedule: r.schedule,
        health: mirror!.healthReport()[i],
        running: sync?.isRunning(i) ?? false,
        lastRun: mirror!.state.lastRun(mirror!.upstream(i).name) ?? null,
      })),
    };
  });
  app.use(router.routes());

  app.use(async (ctx) => {
    const match = matchRoute(ctx.method, ctx.path);
    if (match.kind === "none") {
      throw new RegistryError("NAME_UNKNOWN", `no such endpoint: ${ctx.method} ${ctx.path.slice(0, 200)}`, {
        status: 404,
      });
    }
    if (match.kind === "method") {
      throw new RegistryError("UNSUPPORTED", `${ctx.method} is not supported on ${ctx.path.slice(0, 200)}`, {
        headers: { Allow: match.allow.join(", ") },
      });
    }
    (ctx as Ctx).state.endpoint = match.route.endpoint;
    const m = deps.mirror();
    if (match.route.repo) {
      if (m) match.route.repo = nsRepository(m, ctx.query.ns, match.route);
      assertValidName(match.route.repo);
    }
    const c = ctx as Ctx;
    await deps.access().authorize(c, match.route, m ? (repo) => m.aliases(repo) : (repo) => [repo]);
    refuseWriteIntoMirror(m, match.route);
    c.state.mirror = m;
    c.state.repo = match.route.repo;
    c.state.ref = match.route.ref;
    const blobRead = match.route.endpoint === "blob.get" || match.route.endpoint === "blob.head";
    if (blobRead && deps.redirects && (await redirectToBlobCopy(c, deps.redirects, deps.stores, logger)))
      return;
    await handlers[match.route.endpoint](c);
  });
  return app;
}
