import { type CopyEvent, copyImage } from "../copy/copy.ts";
import { type Edge, locateRegistry, repositoryIn, srcRef } from "./edges.ts";
import type { OpenRegistry, Plan } from "./plan.ts";

/** One image to put at one destination repository, with every tag the plan wants there. */
export interface PromotionJob {
  edge: Edge;
  tags: string[];
}

export interface JobOutcome {
  job: PromotionJob;
  error?: Error;
}

/** Groups the plan's copy and tag steps: one copy per image and destination, all its tags at once. */
export function promotionJobs(plan: Plan): PromotionJob[] {
  const jobs = new Map<string, PromotionJob>();
  for (const s of plan.steps) {
    if (s.kind !== "copy" && s.kind !== "tag") continue;
    const key = `${srcRef(s.edge)} ${s.edge.dst}/${s.edge.name}`;
    const job = jobs.get(key) ?? { edge: s.edge, tags: [] };
    if (s.edge.tag) job.tags.push(s.edge.tag);
    jobs.set(key, job);
  }
  return [...jobs.values()];
}

/**
 * Copies each job by digest, children before the index, every digest kept. A failed job is
 * reported and the others still run; a plan with tag moves must never reach this.
 */
export async function executePromotion(
  plan: Plan,
  open: OpenRegistry,
  opts: {
    concurrency?: number;
    retries?: number;
    onEvent?: (e: CopyEvent) => void;
    onDone?: (o: JobOutcome) => void;
  },
): Promise<JobOutcome[]> {
  if (plan.tagMoves.length) throw new Error("refusing to copy: the plan moves tags");
  const outcomes: JobOutcome[] = [];
  for (const job of promotionJobs(plan)) {
    const { edge } = job;
    const outcome: JobOutcome = { job };
    try {
      const src = await open(locateRegistry(edge.src).host, "source");
      const dst = await open(locateRegistry(edge.dst).host, "destination");
      const result = await copyImage(
        {
          registry: src,
          repo: repositoryIn(edge.src, edge.name),
          reference: edge.digest,
          name: srcRef(edge),
        },
        {
          registry: dst,
          repo: repositoryIn(edge.dst, edge.name),
          tags: job.tags,
          name: `${edge.dst}/${edge.name}`,
        },
        {
          platforms: { kind: "all" },
          ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
          ...(opts.retries !== undefined ? { retries: opts.retries } : {}),
          ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
        },
      );
      if (result.digest !== edge.digest) {
        throw new Error(`the copy has digest ${result.digest}, not ${edge.digest}`);
      }
    } catch (err) {
      outcome.error = err as Error;
    }
    outcomes.push(outcome);
    opts.onDone?.(outcome);
  }
  return outcomes;
}
