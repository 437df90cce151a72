import { RegistryError } from "../oci/errors.ts";
import type { Mirror } from "../sync/mirror.ts";
import type { MatchedRoute, RouteAction } from "./routes.ts";

/** Route actions that change a repository: pushes (uploads, manifest PUTs) and deletes. */
const writing = new Set<RouteAction>(["create", "update", "delete", "handler"]);

/**
 * Refuses pushes and deletes into a repository an upstream serves, unless that upstream allows
 * them: a pushed tag would shadow upstream's for good, and a delete would only make the mirror
 * fetch the content again. Periodic sync and pull-through write to the store directly, not here.
 */
export function refuseWriteIntoMirror(mirror: Mirror | undefined, route: MatchedRoute): void {
  if (!mirror || !writing.has(route.action)) return;
  const upstream = mirror.writeProtectingUpstream(route.repo);
  if (upstream === undefined) return;
  throw new RegistryError(
    "DENIED",
    `'${route.repo}' is mirrored from ${upstream}: pushes and deletes there are refused, so it keeps ` +
      "upstream's content. Push to a repository no upstream serves, or set allowLocalWrites on that " +
      "upstream in extensions.sync.registries.",
    { detail: { repository: route.repo, upstream } },
  );
}
