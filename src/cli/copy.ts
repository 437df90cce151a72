import { writeFile } from "node:fs/promises";
import { defaults, type KagamiConfig, loadConfigFile } from "../config/config.ts";
import { CopyError, type CopyOptions, type CopyResult, copyImage } from "../copy/copy.ts";
import { hostPlatform, type PlatformFilter, parsePlatform, platformRegex } from "../copy/platform.ts";
import {
  type OpenedEndpoint,
  type OpenOptions,
  openEndpoint,
  parseTransport,
  type RemoteSettings,
  transportHelp,
} from "../copy/transport.ts";
import { OciLayout } from "../layout/layout.ts";
import type { LocalRegistry } from "../registry/local.ts";
import { Stores } from "../registry/stores.ts";
import { CredentialsError, parseCredsFlag } from "../remote/credentials.ts";
import { UpstreamError } from "../remote/errors.ts";
import { ImageReferenceError } from "../remote/reference.ts";
import { type FlagSpec, intFlag, type ParsedFlags, parseFlags, UsageError } from "./args.ts";
import { createProgress } from "./progress.ts";

export const copyUsage = `Usage: kagami copy [FLAGS] SOURCE DESTINATION

Copies an image (an index with its manifests, configs and layers) between registries, OCI layouts,
oci-archives and the local Kagami store. Every digest is verified on the way and kept: manifests are
never rewritten, except an index filtered with --platform or --filter-by-os, whose digest changes.

Transports:
${transportHelp}

Flags:
  -a, --all                     copy every platform of an index (default: only ${formatHost()}, like skopeo)
      --platform OS/ARCH[/VAR]  copy only this platform (repeatable); several give a filtered index
      --filter-by-os REGEX      copy the platforms whose os/arch[/variant] matches, as oc image mirror does
      --keep-index              with a filter that leaves one platform, still write an index (new digest)
      --referrers               also copy referrers (signatures, SBOMs, attestations) and cosign tags
      --src-creds USER[:PASS]   credentials for the source registry (--dest-creds for the destination)
      --src-tls-verify=BOOL     verify the source's TLS certificate; false also allows plain http (default true)
      --dest-tls-verify=BOOL    the same for the destination
      --src-cert-dir DIR        CA certificates (*.crt) and client.cert/client.key (--dest-cert-dir)
      --authfile FILE           auth file ({"auths": ...}) for both ends (--src-authfile, --dest-authfile)
      --retry-times N           retries of a failed request or blob (default 3)
      --concurrency N           blobs transferred at once (default 4)
      --digestfile FILE         write the digest of the copied image to FILE
  -c, --config FILE             Kagami config whose storage kagami:// uses (default: ./storage)
      --root DIR                the storage directory for kagami:// directly
  -q, --quiet                   no progress output
  -h, --help`;

function formatHost(): string {
  const p = hostPlatform();
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** Flags every copying command shares. */
export const commonFlags: Record<string, FlagSpec> = {
  "src-creds": { type: "string" },
  "dest-creds": { type: "string" },
  "src-tls-verify": { type: "boolean" },
  "dest-tls-verify": { type: "boolean" },
  "tls-verify": { type: "boolean" },
  "src-cert-dir": { type: "string" },
  "dest-cert-dir": { type: "string" },
  "cert-dir": { type: "string" },
  authfile: { type: "string" },
  "src-authfile": { type: "string" },
  "dest-authfile": { type: "string" },
  creds: { type: "string" },
  "retry-times": { type: "string" },
  concurrency: { type: "string" },
  referrers: { type: "boolean" },
  config: { type: "string", short: "c" },
  root: { type: "string" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
};

const copyFlags: Record<string, FlagSpec> = {
  ...commonFlags,
  all: { type: "boolean", short: "a" },
  platform: { type: "string", multiple: true },
  "filter-by-os": { type: "string" },
  "keep-index": { type: "boolean" },
  digestfile: { type: "string" },
};

function str(flags: ParsedFlags, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

function bool(flags: ParsedFlags, name: string): boolean | undefined {
  const v = flags[name];
  return typeof v === "boolean" ? v : undefined;
}

/** Remote settings for one side from `--src-*` / `--dest-*` flags (and the unprefixed ones). */
export function remoteSettings(flags: ParsedFlags, side: "src" | "dest"): RemoteSettings {
  const s: RemoteSettings = { plainHttpFlag: `--${side}-tls-verify` };
  const tls = bool(flags, `${side}-tls-verify`) ?? bool(flags, "tls-verify");
  if (tls !== undefined) s.tlsVerify = tls;
  const certDir = str(flags, `${side}-cert-dir`) ?? str(flags, "cert-dir");
  if (certDir) s.certDir = certDir;
  const creds = str(flags, `${side}-creds`) ?? str(flags, "creds");
  // containers/image: an empty ":" means anonymous
  if (creds !== undefined && creds !== ":" && creds !== "") s.creds = parseCredsFlag(creds);
  const authFile = str(flags, `${side}-authfile`) ?? str(flags, "authfile");
  if (authFile) s.authFile = authFile;
  if (flags["retry-times"] !== undefined) s.maxRetries = intFlag(flags, "retry-times", 3);
  return s;
}

/**
 * Where kagami:// lives: --root DIR (one store), else the stores of --config FILE (its
 * storage.rootDirectory and subPaths), else the default ./storage.
 */
export function localStorage(flags: ParsedFlags): KagamiConfig["storage"] {
  const root = str(flags, "root");
  if (root) return { ...defaults().config.storage, rootDirectory: root, subPaths: [] };
  const config = str(flags, "config");
  return (config ? loadConfigFile(config) : defaults()).config.storage;
}

/** Opens the local stores once, on first use; `open(repo)` gives the store that holds `repo`. */
export function localOpener(flags: ParsedFlags): {
  open: (repo: string) => Promise<LocalRegistry>;
  close: () => Promise<void>;
} {
  let opened: Promise<Stores> | undefined;
  return {
    open: async (repo) => {
      opened ??= Stores.open(localStorage(flags));
      return (await opened).for(repo);
    },
    close: async () => {
      if (opened) (await opened.catch(() => undefined))?.close();
    },
  };
}

/** Runs one copy between opened endpoints, finishing (or discarding) the destination. */
export async function runCopy(
  src: OpenedEndpoint,
  dst: OpenedEndpoint,
  options: CopyOptions,
  quiet: boolean,
): Promise<CopyResult> {
  const progress = createProgress(process.stderr, { quiet });
  let result: CopyResult | undefined;
  try {
    result = await copyImage(
      { registry: src.registry, repo: src.repo, reference: src.reference, name: src.name },
      { registry: dst.registry, repo: dst.repo, tags: dst.tags, name: dst.name },
      { ...options, onEvent: (e) => progress.onEvent(e) },
    );
    if (dst.digest && result.digest !== dst.digest) {
      throw new CopyError(
        `copying ${src.name} to ${dst.name}: the copy has digest ${result.digest}, not the ${dst.digest} the destination names`,
        undefined,
      );
    }
    if (dst.tags.length === 0 && dst.registry instanceof OciLayout) {
      await dst.registry.addUntagged({
        mediaType: result.mediaType,
        digest: result.digest,
        size: result.size,
      });
    }
    return result;
  } finally {
    progress.finish(result, `Copied ${src.name} to ${dst.name}`);
  }
}

/** Prints an error the way every copy command does and gives the exit status. */
export function reportError(command: string, err: unknown): number {
  if (err instanceof UsageError || err instanceof ImageReferenceError) {
    process.stderr.write(`kagami ${command}: ${err.message}\n(see kagami ${command} --help)\n`);
    return 2;
  }
  if (err instanceof CredentialsError || err instanceof CopyError) {
    const cause = err instanceof CopyError ? err.cause : undefined;
    const hint =
      cause instanceof UpstreamError && cause.code === "UNAUTHORIZED"
        ? "\n(give credentials with --src-creds/--dest-creds USER:PASS or an --authfile)"
        : "";
    process.stderr.write(`kagami ${command}: ${err.message}${hint}\n`);
    return 1;
  }
  process.stderr.write(`kagami ${command}: ${(err as Error)?.message ?? String(err)}\n`);
  return 1;
}

export function copyOptions(flags: ParsedFlags): CopyOptions {
  const opts: CopyOptions = {
    concurrency: intFlag(flags, "concurrency", 4, 1),
    retries: intFlag(flags, "retry-times", 3),
  };
  if (bool(flags, "referrers")) opts.referrers = true;
  return opts;
}

/** The filter `--all`, `--platform` and `--filter-by-os` ask for; skopeo's default is the host's platform. */
export function platformFilter(flags: ParsedFlags, defaultAll: boolean): PlatformFilter {
  const platforms = (flags.platform as string[] | undefined) ?? [];
  const regex = str(flags, "filter-by-os");
  const all = bool(flags, "all");
  const chosen = [
    all ? "--all" : "",
    platforms.length ? "--platform" : "",
    regex ? "--filter-by-os" : "",
  ].filter(Boolean);
  if (chosen.length > 1) throw new UsageError(`${chosen.join(" and ")} cannot be used together`);
  if (all) return { kind: "all" };
  if (platforms.length) {
    try {
      return { kind: "platforms", platforms: platforms.map(parsePlatform) };
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  if (regex) {
    try {
      return { kind: "regex", regex: platformRegex(regex) };
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  return defaultAll ? { kind: "all" } : { kind: "platforms", platforms: [hostPlatform()] };
}

/** `kagami copy SRC DST`. Returns the exit status. */
export async function copyCommand(argv: string[]): Promise<number> {
  let src: OpenedEndpoint | undefined;
  let dst: OpenedEndpoint | undefined;
  let failed = true;
  let local: ReturnType<typeof localOpener> | undefined;
  try {
    const { flags, positionals } = parseFlags(argv, copyFlags);
    if (flags.help) {
      process.stdout.write(`${copyUsage}\n`);
      return 0;
    }
    if (positionals.length !== 2) throw new UsageError("needs exactly two arguments, SOURCE and DESTINATION");
    const srcRef = parseTransport(positionals[0]!);
    const dstRef = parseTransport(positionals[1]!);
    local = localOpener(flags);
    const base: Omit<OpenOptions, "remote"> = { openLocal: local.open };
    src = await openEndpoint(srcRef, "source", { ...base, remote: remoteSettings(flags, "src") });
    dst = await openEndpoint(dstRef, "destination", { ...base, remote: remoteSettings(flags, "dest") });
    const options = copyOptions(flags);
    options.platforms = platformFilter(flags, false);
    if (bool(flags, "keep-index")) options.keepIndex = true;
    const result = await runCopy(src, dst, options, bool(flags, "quiet") === true);
    await dst.commit();
    const digestFile = str(flags, "digestfile");
    if (digestFile) await writeFile(digestFile, result.digest);
    failed = false;
    return 0;
  } catch (err) {
    return reportError("copy", err);
  } finally {
    await dst?.close(failed).catch(() => {});
    await src?.close(failed).catch(() => {});
    await local?.close();
  }
}
