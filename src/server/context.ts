import type { Context } from "koa";
import type { Logger } from "pino";
import type { KagamiConfig } from "../config/config.ts";
import type { LocalRegistry } from "../registry/local.ts";

export interface AppDeps {
  registry: LocalRegistry;
  config: KagamiConfig;
  logger: Logger;
}

export interface RouteState {
  repo: string;
  /** The captured reference, digest or upload id, by route. */
  ref: string;
}

export type Ctx = Context & { state: RouteState };

export function setHeaders(ctx: Ctx, headers: Record<string, string | number>): void {
  for (const [k, v] of Object.entries(headers)) ctx.set(k, String(v));
}

/** An empty response with `status`: Koa would otherwise turn a null body into 204 or a text body. */
export function emptyResponse(ctx: Ctx, status: number): void {
  ctx.body = null;
  ctx.status = status;
}
