import { RegistryError } from "../oci/errors.ts";
import type { Mirror } from "../sync/mirror.ts";
import { assertNsHost, nsLocalName } from "../sync/routing.ts";
import type { MatchedRoute } from "./routes.ts";

/**
 * The local repository of a request that may carry containerd's `?ns=<registry host>`: the mirror
 * stores what it fetches for a host under that host (`docker.io/library/alpine`). A host no
 * on-demand upstream serves gets a fast 404 without any lookup, so containerd goes on to its next
 * host (the registry itself) instead of being handed another registry's image of the same name.
 */
export function nsRepository(mirror: Mirror, ns: unknown, route: MatchedRoute): string {
  if (ns === undefined || ns === "") return route.repo;
  if (typeof ns !== "string") {
    throw new RegistryError("NAME_INVALID", "ns may be given once, naming one registry host", {
      status: 400,
    });
  }
  const host = assertNsHost(ns);
  if (!mirror.pullsFrom(host)) {
    const code = route.endpoint.startsWith("manifest.")
      ? "MANIFEST_UNKNOWN"
      : route.endpoint.startsWith("blob.")
        ? "BLOB_UNKNOWN"
        : "NAME_UNKNOWN";
    throw new RegistryError(
      code,
      `this mirror has no on-demand upstream for ${host}; ask ${host} itself for '${route.repo}'`,
      { status: 404, detail: { ns: host, name: route.repo } },
    );
  }
  return nsLocalName(host, route.repo);
}
