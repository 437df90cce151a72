import { Limiter } from "../copy/limit.ts";
import type { Registry } from "../registry/registry.ts";
import { dstRef, type Edge, locateRegistry, repositoryIn, srcRef } from "./edges.ts";

/** What one edge needs, judged against what the registries hold now. */
export type Step =
  /** Neither digest nor tag at the destination: copy the image tree and tag it. */
  | { kind: "copy"; edge: Edge }
  /** The digest is there without this tag: add the tag. */
  | { kind: "tag"; edge: Edge }
  /** Already promoted. */
  | { kind: "done"; edge: Edge }
  /** The source lacks the digest: reported, skipped. */
  | { kind: "lost"; edge: Edge }
  /** The destination tag names another digest: the whole run is refused. */
  | { kind: "tag-move"; edge: Edge; current: string };

/** Opens (once) the registry a host names; the CLI chooses credentials and TLS per side. */
export type OpenRegistry = (host: string, side: "source" | "destination") => Promise<Registry>;

/** A registry that could not be asked; the plan cannot be trusted without its answer. */
export class PlanError extends Error {
  constructor(
    message: string,
    override readonly cause: unknown,
  ) {
    super(message);
    this.name = "PlanError";
  }
}

export interface Plan {
  steps: Step[];
  tagMoves: Extract<Step, { kind: "tag-move" }>[];
}

/** Resolves each reference once, however many edges ask. */
class Resolver {
  private readonly cache = new Map<string, Promise<string | undefined>>();
  private readonly limiter: Limiter;

  constructor(
    private readonly open: OpenRegistry,
    concurrency: number,
  ) {
    this.limiter = new Limiter(concurrency);
  }

  digestOf(
    registry: string,
    side: "source" | "destination",
    image: string,
    reference: string,
  ): Promise<string | undefined> {
    const key = `${side} ${registry}/${image} ${reference}`;
    let p = this.cache.get(key);
    if (!p) {
      p = this.limiter.run(async () => {
        const what = `${registry}/${image}${reference.includes(":") ? "@" : ":"}${reference}`;
        try {
          const r = await this.open(locateRegistry(registry).host, side);
          return (await r.headManifest(repositoryIn(registry, image), reference))?.digest;
        } catch (err) {
          throw new PlanError(`looking up ${what} at the ${side}: ${(err as Error).message}`, err);
        }
      });
      this.cache.set(key, p);
    }
    return p;
  }
}

async function judge(r: Resolver, e: Edge): Promise<Step> {
  if (e.tag) {
    const current = await r.digestOf(e.dst, "destination", e.name, e.tag);
    if (current === e.digest) return { kind: "done", edge: e };
    // Checked before the source: a tag that moved is refused whether or not the source still has the digest.
    if (current) return { kind: "tag-move", edge: e, current };
  }
  const atDst = (await r.digestOf(e.dst, "destination", e.name, e.digest)) === e.digest;
  if (!e.tag && atDst) return { kind: "done", edge: e };
  const atSrc = (await r.digestOf(e.src, "source", e.name, e.digest)) === e.digest;
  if (!atSrc) return { kind: "lost", edge: e };
  return { kind: atDst ? "tag" : "copy", edge: e };
}

/** Looks at the source and every destination and says what each edge needs; copies nothing. */
export async function planPromotion(edges: Edge[], open: OpenRegistry, concurrency = 8): Promise<Plan> {
  const r = new Resolver(open, concurrency);
  const steps = await Promise.all(edges.map((e) => judge(r, e)));
  steps.sort(
    (a, b) => dstRef(a.edge).localeCompare(dstRef(b.edge)) || srcRef(a.edge).localeCompare(srcRef(b.edge)),
  );
  return {
    steps,
    tagMoves: steps.filter((s): s is Extract<Step, { kind: "tag-move" }> => s.kind === "tag-move"),
  };
}

export function describeStep(s: Step): string {
  const from = srcRef(s.edge);
  const to = dstRef(s.edge);
  switch (s.kind) {
    case "copy":
      return `copy     ${from} -> ${to}`;
    case "tag":
      return `add tag  ${to} (the digest is already there)`;
    case "done":
      return `present  ${to}`;
    case "lost":
      return `lost     ${from}: not in the source registry; skipped (push it to the source again)`;
    case "tag-move":
      return `REFUSED  ${to} points at ${s.current}, not ${s.edge.digest}: tag moves are not supported`;
  }
}
