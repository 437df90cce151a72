import { readFile } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { compileGoRegexp } from "../config/go-regexp.ts";
import type { PlatformFilter } from "../copy/platform.ts";
import type { RemoteSettings } from "../copy/transport.ts";
import { MappingError } from "../mapping/errors.ts";
import { expandMappings, type MappingSpec, parseMappingArgs, parseMappingFile } from "../mapping/mappings.ts";
import { isNotFound, Places } from "../mapping/places.ts";
import { formatPlan, makePlan } from "../mapping/plan.ts";
import { formatMirrorRef } from "../mapping/reference.ts";
import { runPlan } from "../mapping/run.ts";
import { type FlagSpec, intFlag, parseFlags, UsageError } from "./args.ts";
import { reportError } from "./copy.ts";
import { formatBytes } from "./progress.ts";

export const mirrorUsage = `Usage: kagami mirror [FLAGS] SRC DST [DST…]
       kagami mirror [FLAGS] SRC=DST [SRC=DST…]
       kagami mirror [FLAGS] -f MAPPING_FILE [-f …]

Mirrors images between registries as oc image mirror does, reading the same arguments and mapping
files: each line is SRC DST [DST…] or SRC=DST pairs, # starts a comment. Digests are kept (unless a
platform filter rewrites an index). SRC needs a tag or digest; a * in its tag is matched against the
source's tags, no tag at all means every tag (DST must then be a repository). A DST without tag takes
the source's tag. References without a registry are Docker Hub's; file://REPO names oc's tree under
--dir; oci:DIR[:TAG] and oci-archive:FILE[:TAG] name OCI layouts and archives.

The plan is printed first (stderr), then "<digest> <dst>:<tag>" for each tag pushed (stdout).
Exit status: 0 all mirrored, 1 something failed, 2 bad arguments or mapping files (nothing copied).

Flags:
  -f, --filename FILE           read mappings from FILE (repeatable; - is stdin)
      --dry-run                 plan and print, copy nothing
      --filter-by-os REGEX      copy the platforms of an index whose os/arch[/variant] the regex finds
                                (unanchored, as oc: linux/arm picks linux/arm64 and linux/arm/v7);
                                default: the whole index
      --keep-manifest-list      write an index even when the filter leaves one platform (new digest)
      --force                   write manifests and tags even where the destination already has them
      --skip-missing            a source that does not exist is a warning, not an error
      --continue-on-error       keep mirroring after an image fails (the exit status is still 1)
      --skip-mount              upload every blob, never mount one from another repository
      --max-registry N          destination registries at once (default 4)
      --max-per-registry N      images and blob transfers at once per registry (default 6)
  -a, --registry-config FILE    credentials: a docker config.json or containers auth.json
                                (default: REGISTRY_AUTH_FILE, containers/auth.json, ~/.docker/config.json)
      --insecure                allow plain HTTP and registries with unverified certificates
      --certificate-authority F a PEM file of CAs to trust besides the system's
      --dir DIR                 where file:// repositories are (default .)
      --from-dir DIR            where file:// sources are read from (default: --dir)
      --retry-times N           retries of a failed request or blob (default 3)
  -q, --quiet                   no progress, only the plan, the pushed tags and errors
  -h, --help`;

const mirrorFlags: Record<string, FlagSpec> = {
  filename: { type: "string", short: "f", multiple: true },
  "dry-run": { type: "boolean" },
  "filter-by-os": { type: "string" },
  "keep-manifest-list": { type: "boolean" },
  force: { type: "boolean" },
  "skip-missing": { type: "boolean" },
  "continue-on-error": { type: "boolean" },
  "skip-mount": { type: "boolean" },
  "skip-multiple-scopes": { type: "boolean" },
  "max-registry": { type: "string" },
  "max-per-registry": { type: "string" },
  "registry-config": { type: "string", short: "a" },
  insecure: { type: "boolean" },
  "certificate-authority": { type: "string" },
  dir: { type: "string" },
  "from-dir": { type: "string" },
  "retry-times": { type: "string" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
};

/** oc compiles --filter-by-os with Go's regexp and matches it anywhere: `linux/arm` also finds arm64. */
function platformFilter(pattern: string | undefined): PlatformFilter {
  if (pattern === undefined) return { kind: "all" };
  try {
    return { kind: "regex", regex: compileGoRegexp(pattern) };
  } catch (err) {
    throw new UsageError(`--filter-by-os: ${(err as Error).message}`);
  }
}

async function readSpecs(files: string[], positionals: string[]): Promise<MappingSpec[]> {
  const specs = positionals.length ? parseMappingArgs(positionals) : [];
  let stdinUsed = false;
  for (const f of files) {
    let content: string;
    if (f === "-") {
      if (stdinUsed) throw new UsageError("-f - (stdin) may be given once");
      stdinUsed = true;
      content = await text(process.stdin);
    } else {
      try {
        content = await readFile(f, "utf8");
      } catch (err) {
        throw new MappingError(`file ${f}: ${(err as Error).message}`);
      }
    }
    specs.push(...parseMappingFile(f, content));
  }
  if (specs.length === 0) {
    throw new UsageError(
      "give at least one source and destination: SRC=DST, SRC DST [DST…], or -f MAPPING_FILE",
    );
  }
  return specs;
}

/** `kagami mirror`. Returns the exit status. */
export async function mirrorCommand(argv: string[]): Promise<number> {
  const started = Date.now();
  let places: Places | undefined;
  try {
    const { flags, positionals } = parseFlags(argv, mirrorFlags);
    if (flags.help) {
      process.stdout.write(`${mirrorUsage}\n`);
      return 0;
    }
    const platforms = platformFilter(flags["filter-by-os"] as string | undefined);
    const maxRegistry = intFlag(flags, "max-registry", 4, 1);
    const maxPerRegistry = intFlag(flags, "max-per-registry", 6, 1);
    const retries = intFlag(flags, "retry-times", 3);
    const quiet = flags.quiet === true;
    const specs = await readSpecs((flags.filename as string[] | undefined) ?? [], positionals);

    const remote: RemoteSettings = {
      tlsVerify: flags.insecure !== true,
      maxRetries: retries,
      // Mapping references have no http:// form, so the advice must name the flag.
      plainHttpFlag: "--insecure",
    };
    if (typeof flags["registry-config"] === "string") remote.authFile = flags["registry-config"];
    if (typeof flags["certificate-authority"] === "string") remote.caFile = flags["certificate-authority"];
    const dir = typeof flags.dir === "string" ? flags.dir : ".";
    const fromDir = typeof flags["from-dir"] === "string" ? flags["from-dir"] : dir;
    places = new Places({ remote, dir, fromDir });
    const opened = places;
    const skipMissing = flags["skip-missing"] === true;
    const continueOnError = flags["continue-on-error"] === true;

    const { mappings, warnings } = await expandMappings(specs, async (src) => {
      const { registry, repo } = await opened.open(src.location, "source");
      try {
        return await registry.listTags(repo);
      } catch (err) {
        if (skipMissing && isNotFound(err)) return undefined;
        throw err;
      }
    });
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);

    const plan = await makePlan(mappings, places, {
      platforms,
      keepManifestList: flags["keep-manifest-list"] === true,
      force: flags.force === true,
      skipMissing,
      maxPerRegistry,
    });
    for (const w of plan.warnings) process.stderr.write(`warning: ${w}\n`);
    process.stderr.write(`${formatPlan(plan)}\n`);
    for (const e of plan.errors) process.stderr.write(`error: ${e}\n`);
    if (plan.errors.length && !continueOnError) {
      process.stderr.write("error: planning failed, nothing was copied\n");
      return 1;
    }
    if (flags["dry-run"] === true) {
      process.stderr.write("info: Dry run complete\n");
      return plan.errors.length ? 1 : 0;
    }

    const total = plan.jobs.filter((j) => j.tags.length || j.byDigest).length;
    const tty = process.stderr.isTTY === true && !quiet;
    let done = 0;
    let bytes = 0;
    const summary = await runPlan(plan, places, {
      platforms,
      keepManifestList: flags["keep-manifest-list"] === true,
      skipMount: flags["skip-mount"] === true,
      continueOnError,
      maxRegistry,
      maxPerRegistry,
      retries,
      onPushed: (line) => process.stdout.write(`${line}\n`),
      onEvent: (_job, e) => {
        if (e.type === "warning") process.stderr.write(`${tty ? "\r\x1b[K" : ""}warning: ${e.message}\n`);
        if (e.type === "blob-bytes") bytes += e.bytes;
        if (tty && (e.type === "blob-done" || e.type === "plan")) {
          process.stderr.write(`\r\x1b[Kmirroring: ${done}/${total} images, ${formatBytes(bytes)}`);
        }
      },
      onImageDone: (job, r) => {
        done++;
        if (quiet) return;
        const b = r.blobs;
        process.stderr.write(
          `${tty ? "\r\x1b[K" : ""}mirrored ${job.srcName} to ${formatMirrorRef({ location: job.dst })}` +
            ` as ${r.digest} (${b.copied} blobs copied, ${b.mounted} mounted, ${b.skipped} present, ${formatBytes(r.bytesCopied)})\n`,
        );
      },
    });
    if (tty) process.stderr.write("\r\x1b[K");
    for (const e of summary.errors) process.stderr.write(`error: ${e}\n`);
    const skipped = plan.jobs.length - total;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(
      `info: Mirrored ${summary.images} image${summary.images === 1 ? "" : "s"} (${skipped} already there, ` +
        `${summary.failed} failed${summary.notStarted ? `, ${summary.notStarted} not started` : ""}): ` +
        `${summary.blobsCopied} blobs copied, ${summary.blobsMounted} mounted, ${summary.blobsPresent} present, ` +
        `${formatBytes(summary.bytes)} in ${secs} s\n`,
    );
    const ok = summary.failed === 0 && plan.errors.length === 0;
    // Layouts and archives are made durable here, so that a failure to write them is the run's failure.
    places = undefined;
    await opened.finish(summary.failed > 0);
    return ok ? 0 : 1;
  } catch (err) {
    if (err instanceof MappingError) {
      process.stderr.write(`kagami mirror: ${err.message}\n`);
      return 2;
    }
    return reportError("mirror", err);
  } finally {
    await places?.finish(true).catch((err: unknown) => {
      process.stderr.write(`kagami mirror: ${(err as Error).message}\n`);
    });
  }
}
