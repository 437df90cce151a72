import { stat } from "node:fs/promises";
import { type OpenedEndpoint, openEndpoint, parseTransport, type TransportRef } from "../copy/transport.ts";
import { OciArchiveReader } from "../layout/archive.ts";
import { type LayoutBase, OciLayout } from "../layout/layout.ts";
import { isValidName, isValidTag } from "../oci/names.ts";
import { type FlagSpec, type ParsedFlags, parseFlags, UsageError } from "./args.ts";
import { commonFlags, copyOptions, localOpener, remoteSettings, reportError, runCopy } from "./copy.ts";

export const importUsage = `Usage: kagami import [FLAGS] FILE|DIR

Loads every tagged image of an oci-archive (FILE) or OCI layout (DIR) into the local Kagami store,
for air-gapped sites. Each index.json entry's ref.name says where it goes: "REPO:TAG" (as written by
kagami export and podman save) keeps its repository; a bare "TAG" needs --repo. Digests are kept,
every platform is copied, and referrers (signatures, SBOMs) come along.

Flags:
      --repo NAME     put every image into this repository (keeping each tag)
      --no-referrers  leave referrers behind
  -c, --config FILE   Kagami config whose storage to import into (default: ./storage)
      --root DIR      the storage directory directly
  -q, --quiet`;

export const exportUsage = `Usage: kagami export [FLAGS] REF [REF...] FILE

Writes images of the local Kagami store to an oci-archive FILE (or, as oci:DIR, an OCI layout) to
carry to an air-gapped site; kagami import loads it there. REF is REPO:TAG or REPO@DIGEST in the
local store, or any copy source (docker://..., oci:..., kagami://...). Every platform and the
referrers are included; each image is named REPO:TAG in the archive.

Flags:
      --no-referrers  leave referrers behind
  -c, --config FILE   Kagami config whose storage to read (default: ./storage)
      --root DIR      the storage directory directly
  (and the --src-creds / --src-tls-verify / --src-cert-dir / --authfile flags of kagami copy for docker:// sources)
  -q, --quiet`;

const importFlags: Record<string, FlagSpec> = { ...commonFlags, repo: { type: "string" } };

/** Splits an archive ref.name into repository and tag; a leading registry host is dropped. */
export function splitRefName(name: string): { repo?: string; tag: string } {
  const colon = name.lastIndexOf(":");
  if (colon < 0 || colon < name.lastIndexOf("/")) {
    return name.includes("/") ? { repo: name, tag: "latest" } : { tag: name };
  }
  let repo = name.slice(0, colon);
  const tag = name.slice(colon + 1);
  const slash = repo.indexOf("/");
  if (slash > 0) {
    const first = repo.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost") repo = repo.slice(slash + 1);
  }
  return { repo, tag };
}

function quiet(flags: ParsedFlags): boolean {
  return flags.quiet === true;
}

/** `kagami import FILE|DIR`. */
export async function importCommand(argv: string[]): Promise<number> {
  let opener: ReturnType<typeof localOpener> | undefined;
  let archive: OciArchiveReader | undefined;
  try {
    const { flags, positionals } = parseFlags(argv, importFlags);
    if (flags.help) {
      process.stdout.write(`${importUsage}\n`);
      return 0;
    }
    if (positionals.length !== 1)
      throw new UsageError("needs one argument: the archive file or layout directory");
    const path = positionals[0]!.replace(/^oci(-archive)?:/, "");
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new UsageError(`${path} does not exist`);
    if (!st.isDirectory()) archive = await OciArchiveReader.open(path);
    const source: LayoutBase = archive ?? (await OciLayout.open(path));
    const repoFlag = typeof flags.repo === "string" ? flags.repo : undefined;
    if (repoFlag !== undefined && !isValidName(repoFlag))
      throw new UsageError(`--repo '${repoFlag}' is not a valid repository name`);
    const refs = await source.refs();
    if (refs.length === 0)
      throw new UsageError(`${path} names no images (no org.opencontainers.image.ref.name in index.json)`);
    const plan = refs.map(({ name }) => {
      const split = splitRefName(name);
      const repo = repoFlag ?? split.repo;
      if (!repo) {
        throw new UsageError(
          `image '${name}' in ${path} has only a tag; say which repository it goes to with --repo`,
        );
      }
      if (!isValidName(repo) || !isValidTag(split.tag)) {
        throw new UsageError(`image '${name}' in ${path} is not REPO:TAG with a valid name; use --repo`);
      }
      return { name, repo, tag: split.tag };
    });
    opener = localOpener(flags);
    const options = copyOptions(flags);
    options.referrers = flags.referrers !== false;
    options.platforms = { kind: "all" };
    for (const p of plan) {
      const src: OpenedEndpoint = {
        registry: source,
        repo: "",
        reference: p.name,
        tags: [],
        name: `${st.isDirectory() ? "oci" : "oci-archive"}:${path}:${p.name}`,
        commit: async () => {},
        close: async () => {},
      };
      const dst: OpenedEndpoint = {
        registry: await opener.open(p.repo),
        repo: p.repo,
        reference: p.tag,
        tags: [p.tag],
        name: `kagami://${p.repo}:${p.tag}`,
        commit: async () => {},
        close: async () => {},
      };
      await runCopy(src, dst, options, quiet(flags));
    }
    return 0;
  } catch (err) {
    return reportError("import", err);
  } finally {
    await archive?.close();
    await opener?.close();
  }
}

/** `kagami export REF [REF...] FILE`. */
export async function exportCommand(argv: string[]): Promise<number> {
  let opener: ReturnType<typeof localOpener> | undefined;
  let dst: OpenedEndpoint | undefined;
  let failed = true;
  const sources: OpenedEndpoint[] = [];
  try {
    const { flags, positionals } = parseFlags(argv, commonFlags);
    if (flags.help) {
      process.stdout.write(`${exportUsage}\n`);
      return 0;
    }
    if (positionals.length < 2) throw new UsageError("needs at least one image and the output FILE");
    const out = positionals[positionals.length - 1]!;
    const outRef: TransportRef = out.startsWith("oci:")
      ? { transport: "oci", path: out.slice(4), reference: "" }
      : { transport: "oci-archive", path: out.replace(/^oci-archive:/, ""), reference: "" };
    opener = localOpener(flags);
    const openLocal = opener.open;
    const parsed = positionals
      .slice(0, -1)
      .map((r) => parseTransport(/^(docker:\/\/|kagami:|oci:|oci-archive:)/.test(r) ? r : `kagami://${r}`));
    dst = await openEndpoint(outRef, "destination", { openLocal, remote: remoteSettings(flags, "dest") });
    const options = copyOptions(flags);
    options.referrers = flags.referrers !== false;
    options.platforms = { kind: "all" };
    for (const t of parsed) {
      const src = await openEndpoint(t, "source", { openLocal, remote: remoteSettings(flags, "src") });
      sources.push(src);
      const repo = t.transport === "docker" || t.transport === "kagami" ? t.repo : "";
      const tag = t.transport === "docker" || t.transport === "kagami" ? t.tag : t.reference;
      // name each image REPO:TAG so that import puts it back where it came from
      const refName = repo && tag ? `${repo}:${tag}` : (tag ?? "");
      await runCopy(src, { ...dst, tags: refName ? [refName] : [] }, options, quiet(flags));
    }
    await dst.commit();
    failed = false;
    return 0;
  } catch (err) {
    return reportError("export", err);
  } finally {
    await dst?.close(failed).catch(() => {});
    for (const s of sources) await s.close(failed).catch(() => {});
    await opener?.close();
  }
}
