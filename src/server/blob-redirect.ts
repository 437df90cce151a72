import type { Logger } from "pino";
import { isDigest } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { ClientAddressError } from "../redirect/client-ip.ts";
import type { RedirectRules } from "../redirect/rules.ts";
import type { Stores } from "../registry/stores.ts";
import { type Ctx, emptyResponse } from "./context.ts";

/** The client's address for redirect rules; a forwarded header we cannot read is the client's 400. */
export function requestClientAddress(ctx: Ctx, rules: RedirectRules): string {
  try {
    return rules.clientAddress(ctx.req.socket.remoteAddress, ctx.get("X-Forwarded-For") || undefined);
  } catch (err) {
    if (!(err instanceof ClientAddressError)) throw err;
    throw new RegistryError("UNSUPPORTED", `cannot tell the client's address: ${err.message}`, {
      status: 400,
    });
  }
}

/**
 * Mirror mode: after access control, a blob GET/HEAD goes to the copy near the client when that
 * copy has it. Only a blob this repository holds is sent anywhere, so the answer tells a caller
 * nothing the repository's own content does not; the rest is served here (a pull-through fills
 * the store, and the next request is redirected). Resolves true when it answered.
 */
export async function redirectToBlobCopy(
  ctx: Ctx,
  rules: RedirectRules,
  stores: Stores,
  logger: Logger,
): Promise<boolean> {
  const { repo, ref: digest } = ctx.state;
  const client = requestClientAddress(ctx, rules);
  if (!isDigest(digest) || (await stores.for(repo).blobSize(repo, digest)) === undefined) return false;
  const target = await rules.blobTarget(client, digest, repo);
  if (!target) return false;
  logger.debug({ repo, digest, client, rule: target.rule }, "blob redirected to a copy");
  ctx.set("Location", target.url);
  emptyResponse(ctx, 307);
  return true;
}
