import { type RemoteSettings, remoteFor } from "../copy/transport.ts";
import {
  type Edge,
  edgesInventory,
  locateRegistry,
  OverlappingEdgesError,
  registryNameProblem,
  toEdges,
} from "../promote/edges.ts";
import { executePromotion } from "../promote/execute.ts";
import { loadPlainManifest, ManifestError, type PromoterManifest } from "../promote/manifest.ts";
import { describeStep, type OpenRegistry, PlanError, planPromotion } from "../promote/plan.ts";
import {
  filterByTag,
  type Inventory,
  inventoryCsv,
  inventoryYaml,
  snapshotRegistry,
} from "../promote/snapshot.ts";
import { loadThinManifestDir } from "../promote/thin.ts";
import type { Registry } from "../registry/registry.ts";
import { type FlagSpec, intFlag, type ParsedFlags, parseFlags, UsageError } from "./args.ts";
import { commonFlags, remoteSettings, reportError } from "./copy.ts";
import { createProgress } from "./progress.ts";

export const promoteUsage = `Usage: kagami promote --manifest FILE | --thin-manifest-dir DIR [--confirm | --parse-only] [FLAGS]
       kagami promote --snapshot REGISTRY[/PATH] [--output yaml|csv] [FLAGS]

Promotes images by digest from a source registry to destination registries as a Kubernetes image
promoter manifest lists them (kpromo cip's files, read as they are). The default is a dry run: the
manifests are checked, the source and every destination are read, and the plan is printed.
--confirm copies (every digest kept, children before their index). A destination tag that already
points at another digest refuses the whole run before anything is copied: tag moves are not supported.

Manifests:
      --manifest FILE             a plain manifest: registries and images in one file
      --thin-manifest-dir DIR     thin manifests: DIR/manifests/<sub>/promoter-manifest.yaml (registries)
                                  with DIR/images/<sub>/images.yaml (images)
      --confirm                   copy; without it nothing is written
      --parse-only                only read and check the manifests (no registry is contacted)
      --snapshot REGISTRY         print what REGISTRY (host, or host/path) holds in images.yaml format
      --output yaml|csv           the snapshot's format (default yaml)
      --snapshot-tag TAG          only the digests that carry TAG in the snapshot
      --minimal-snapshot          leave untagged manifests of an index out of the snapshot
      --manifest-based-snapshot-of REGISTRY
                                  print what the manifests would put in REGISTRY (no registry is read)

Credentials and connections (the source takes --src-*, every destination --dest-*):
      --authfile FILE             auth file ({"auths": ...}) for all registries (--src-authfile, --dest-authfile)
      --src-creds USER[:PASS]     credentials for the source (--dest-creds for the destinations)
      --src-tls-verify=BOOL       verify TLS; false also allows plain http (--dest-tls-verify, --tls-verify)
      --src-cert-dir DIR          CA certificates and client.cert/client.key (--dest-cert-dir, --cert-dir)
      --retry-times N             retries of a failed request or blob (default 3)
      --concurrency N             blobs transferred at once (default 4)
  -v, --verbose                   also list the edges already promoted
  -q, --quiet                     no progress output
  -h, --help

A registry's service-account (and --use-service-account) is accepted and not used: Kagami takes
credentials from the flags above, the auth files and the usual docker/podman locations.`;

const promoteFlags: Record<string, FlagSpec> = {
  ...Object.fromEntries(
    Object.entries(commonFlags).filter(([k]) => !["config", "root", "referrers"].includes(k)),
  ),
  manifest: { type: "string" },
  "thin-manifest-dir": { type: "string" },
  confirm: { type: "boolean" },
  "parse-only": { type: "boolean" },
  snapshot: { type: "string" },
  output: { type: "string" },
  "minimal-snapshot": { type: "boolean" },
  "snapshot-tag": { type: "string" },
  "manifest-based-snapshot-of": { type: "string" },
  "key-files": { type: "string" },
  "use-service-account": { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
};

/** A promotion refused or failed after its plan and outcomes were printed: exit status 1. */
class PromoteFailed extends Error {
  override name = "PromoteFailed";
}

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

function err(s: string): void {
  process.stderr.write(`${s}\n`);
}

/** Registries opened once per host and side, each side with its own settings. */
function registryOpener(flags: ParsedFlags): { open: OpenRegistry; close: () => Promise<void> } {
  const opened = new Map<string, Promise<Registry & { close(): Promise<void> }>>();
  const settings: Record<"source" | "destination", RemoteSettings> = {
    source: remoteSettings(flags, "src"),
    destination: remoteSettings(flags, "dest"),
  };
  return {
    open: (host, side) => {
      const key = `${side} ${host}`;
      let r = opened.get(key);
      if (!r) {
        r = remoteFor(host, settings[side]);
        opened.set(key, r);
      }
      return r;
    },
    close: async () => {
      for (const r of opened.values()) await (await r.catch(() => undefined))?.close();
    },
  };
}

function loadManifests(flags: ParsedFlags): PromoterManifest[] {
  const file = flags.manifest as string | undefined;
  const dir = flags["thin-manifest-dir"] as string | undefined;
  if (file && dir) throw new UsageError("--manifest and --thin-manifest-dir cannot be used together");
  if (!file && !dir)
    throw new UsageError("needs --manifest FILE, --thin-manifest-dir DIR or --snapshot REGISTRY");
  if (file) return [loadPlainManifest(file)];
  const loaded = loadThinManifestDir(dir as string);
  for (const w of loaded.warnings) err(`warning: ${w}`);
  return loaded.manifests;
}

function reportServiceAccounts(manifests: PromoterManifest[], flags: ParsedFlags): void {
  const accounts = new Set<string>();
  for (const m of manifests)
    for (const r of m.registries) if (r.serviceAccount) accounts.add(r.serviceAccount);
  if (accounts.size) {
    err(
      `note: service-account ${[...accounts].join(", ")} not used: Kagami takes credentials from --authfile, --src-creds/--dest-creds and the usual auth files`,
    );
  }
  if (flags["use-service-account"]) err("note: --use-service-account is accepted and has no effect");
  if (flags["key-files"]) err("note: --key-files is accepted and not used");
}

function printInventory(flags: ParsedFlags, inventory: Inventory): void {
  const tag = flags["snapshot-tag"] as string | undefined;
  const inv = tag ? filterByTag(inventory, tag) : inventory;
  process.stdout.write(flags.output === "csv" ? inventoryCsv(inv) : inventoryYaml(inv));
}

async function snapshot(flags: ParsedFlags, name: string): Promise<void> {
  const { host, prefix } = locateRegistry(name.replace(/\/+$/, ""));
  const registries = registryOpener(flags);
  try {
    const inv = await snapshotRegistry(await registries.open(host, "source"), prefix, {
      minimal: flags["minimal-snapshot"] === true,
    });
    printInventory(flags, inv);
  } finally {
    await registries.close();
  }
}

function summarize(edges: Edge[], manifests: PromoterManifest[]): string {
  const images = manifests.reduce((n, m) => n + m.images.length, 0);
  return `${manifests.length} manifest(s), ${images} image(s), ${edges.length} edge(s)`;
}

async function promote(flags: ParsedFlags): Promise<void> {
  const manifests = loadManifests(flags);
  const edges = toEdges(manifests);
  reportServiceAccounts(manifests, flags);
  const of = flags["manifest-based-snapshot-of"] as string | undefined;
  if (of) {
    printInventory(flags, edgesInventory(edges, of));
    return;
  }
  if (flags["parse-only"]) {
    out(`manifests are valid: ${summarize(edges, manifests)}`);
    return;
  }
  const registries = registryOpener(flags);
  try {
    const plan = await planPromotion(edges, registries.open);
    // A large manifest is mostly edges promoted long ago: those lines only on request.
    for (const s of plan.steps) if (s.kind !== "done" || flags.verbose) out(describeStep(s));
    const count = (k: string) => plan.steps.filter((s) => s.kind === k).length;
    const lost = count("lost");
    if (lost) err(`warning: ${lost} edge(s) name digests the source does not have; they are skipped`);
    if (plan.tagMoves.length) {
      for (const m of plan.tagMoves) err(describeStep(m));
      throw new PromoteFailed(
        `refusing the whole promotion: ${plan.tagMoves.length} destination tag(s) already point at other digests (tag moves are not supported); nothing was copied`,
      );
    }
    const summary = `${count("copy")} to copy, ${count("tag")} to tag, ${count("done")} already promoted, ${lost} lost`;
    if (!flags.confirm) {
      out(`dry run: ${summary}; run again with --confirm to promote`);
      return;
    }
    out(`promoting: ${summary}`);
    const progress = createProgress(process.stderr, { quiet: flags.quiet === true });
    const outcomes = await executePromotion(plan, registries.open, {
      concurrency: intFlag(flags, "concurrency", 4, 1),
      retries: intFlag(flags, "retry-times", 3),
      onEvent: (e) => progress.onEvent(e),
      onDone: (o) => {
        progress.finish(undefined, "");
        const where = `${o.job.edge.dst}/${o.job.edge.name}`;
        if (o.error) err(`failed   ${where}@${o.job.edge.digest}: ${o.error.message}`);
        else if (o.job.tags.length === 0) out(`${o.job.edge.digest} ${where}`);
        else for (const t of o.job.tags) out(`${o.job.edge.digest} ${where}:${t}`);
      },
    });
    const failed = outcomes.filter((o) => o.error).length;
    if (failed) throw new PromoteFailed(`${failed} of ${outcomes.length} promotion(s) failed`);
    out(`promoted ${outcomes.length} image(s)`);
  } finally {
    await registries.close();
  }
}

/** `kagami promote`. Returns the exit status. */
export async function promoteCommand(argv: string[]): Promise<number> {
  try {
    const { flags, positionals } = parseFlags(argv, promoteFlags);
    if (flags.help) {
      out(promoteUsage);
      return 0;
    }
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (flags.confirm && flags["parse-only"])
      throw new UsageError("--confirm and --parse-only cannot be used together");
    const snap = flags.snapshot as string | undefined;
    const format = flags.output as string | undefined;
    if (format !== undefined && format !== "yaml" && format !== "csv") {
      throw new UsageError(`--output takes yaml or csv, not '${format}'`);
    }
    if (snap !== undefined) {
      if (flags.manifest || flags["thin-manifest-dir"] || flags.confirm || flags["parse-only"]) {
        throw new UsageError("--snapshot takes no manifest, --confirm or --parse-only");
      }
      if (!snap) throw new UsageError("--snapshot needs a registry (HOST[:PORT][/PATH])");
      const bad = registryNameProblem(snap.replace(/\/+$/, ""));
      if (bad) throw new UsageError(`--snapshot: ${bad}`);
      await snapshot(flags, snap);
      return 0;
    }
    const ofRegistry = flags["manifest-based-snapshot-of"] !== undefined;
    const snapshotOnly = ["output", "snapshot-tag", "minimal-snapshot"].filter((f) => flags[f] !== undefined);
    if (!ofRegistry && snapshotOnly.length) {
      throw new UsageError(`--${snapshotOnly[0]} goes with --snapshot or --manifest-based-snapshot-of`);
    }
    if (ofRegistry && flags.confirm) {
      throw new UsageError("--manifest-based-snapshot-of copies nothing: leave --confirm out");
    }
    await promote(flags);
    return 0;
  } catch (e) {
    if (
      e instanceof ManifestError ||
      e instanceof OverlappingEdgesError ||
      e instanceof PlanError ||
      e instanceof PromoteFailed
    ) {
      err(`kagami promote: ${e.message}`);
      return 1;
    }
    return reportError("promote", e);
  }
}
