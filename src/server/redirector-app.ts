import type Koa from "koa";
import type { Logger } from "pino";
import { RegistryError } from "../oci/errors.ts";
import type { Redirector } from "../redirect/redirector.ts";
import { artifactFront, createBaseApp } from "./app.ts";
import type { ArtifactService } from "./artifacts-service.ts";

/** A redirector holds no state, so it is live, started and ready as soon as it listens. */
const probes = new Set(["/_kagami/health", "/livez", "/readyz", "/startupz"]);

/** Redirector mode over HTTP: every answer is the Redirector's; only the health check is Kagami's own. */
export function createRedirectorApp(
  redirector: Redirector,
  logger: Logger,
  artifacts?: ArtifactService,
): Koa {
  // Release files under their prefix are served here too: a redirector stores no images, but the
  // file host of the mirror role may sit beside it.
  const app = createBaseApp(logger, artifactFront(artifacts));
  app.use(async (ctx) => {
    // The registry's probe paths too: a Deployment written for the registry (examples/kubernetes
    // probes /livez and /readyz) would otherwise restart a healthy redirector forever.
    if (probes.has(ctx.path) && (ctx.method === "GET" || ctx.method === "HEAD")) {
      ctx.body = { status: "ok" };
      return;
    }
    const answer = await redirector.answer({
      method: ctx.method,
      path: ctx.path,
      search: ctx.search,
      peer: ctx.req.socket.remoteAddress,
      forwarded: ctx.get("X-Forwarded-For") || undefined,
    });
    if (answer.kind === "error") {
      throw new RegistryError(answer.code, answer.message, {
        status: answer.status,
        headers: answer.headers,
      });
    }
    if (answer.kind === "ok") {
      ctx.body = {};
      return;
    }
    logger.debug({ path: ctx.path, to: answer.to, rule: answer.rule }, "redirected");
    ctx.set("Location", answer.location);
    ctx.body = null;
    ctx.status = 307;
  });
  return app;
}
