import { stat } from "node:fs/promises";
import { type OpenedEndpoint, openEndpoint, parseTransport, type TransportRef } from "../copy/transport.ts";
import { OciArchiveReader } from "../layout/archive.ts";
import { DockerArchiveReader } from "../layout/docker-archive.ts";
import { OciLayout } from "../layout/layout.ts";
import { TarFile } from "../layout/tar-file.ts";
import { isValidName, isValidTag } from "../oci/names.ts";
import type { Registry } from "../registry/registry.ts";
import { type FlagSpec, type ParsedFlags, parseFlags, UsageError } from "./args.ts";
import { commonFlags, copyOptions, localOpener, remoteSettings, reportError, runCopy } from "./copy.ts";

export const importUsage = `Usage: kagami import [FLAGS] [oci:|oci-archive:|docker-archive:]PATH[:NAME]

Loads the images of an oci-archive, an OCI layout directory or a docker-archive (what docker save
writes) into the local Kagami store, for air-gapped sites. Each image's name in the archive says
where it goes: "REPO:TAG" (as written by kagami export, podman save and docker save) keeps its
repository, a leading registry host dropped; a bare "TAG" or no name at all (skopeo's
oci-archive:FILE) needs --repo. With a transport prefix, :NAME loads only the image of that name. Digests are kept, every
platform is copied, and referrers (signatures, SBOMs) come along. A docker-archive becomes the
Docker schema 2 image skopeo reads from it (uncompressed layers).

Flags:
      --repo REPO[:TAG]  put the images into REPO, each keeping its tag ("latest" when it has none);
                         with :TAG, the archive's one image goes to REPO:TAG
      --no-referrers     leave referrers behind
  -c, --config FILE      Kagami config whose storage to import into (default: ./storage)
      --root DIR         the storage directory directly
  -q, --quiet`;

export const exportUsage = `Usage: kagami export [FLAGS] REF [REF...] FILE

Writes images of the local Kagami store to an oci-archive FILE (or, as oci:DIR, an OCI layout) to
carry to an air-gapped site; kagami import loads it there. REF is REPO:TAG or REPO@DIGEST in the
local store, or any copy source (docker://..., oci:..., kagami://...). Every platform and the
referrers are included; each image is named REPO:TAG in the archive, its cosign signatures
REPO:sha256-<hex>.sig, so that kagami import puts them back beside it.

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

/** An image found in what is imported: how to read it there, and its name there, if any. */
interface SourceImage {
  reference: string;
  name?: string;
  /** The repository part of the name as written, under which its cosign tags are named. */
  srcRepo: string;
}

interface ImportSource {
  registry: Registry;
  /** The transport-style name of the input, for messages: `oci-archive:FILE`. */
  label: string;
  images: SourceImage[];
  close(): Promise<void>;
}

const cosignTag = /^(sha256)-([0-9a-f]{64})\.(sig|att|sbom)$/;

function repoPart(name: string): string {
  const colon = name.lastIndexOf(":");
  return colon > 0 && colon > name.lastIndexOf("/") ? name.slice(0, colon) : "";
}

/** Opens a tar once (a gzip-compressed one is decompressed once) as what it is or is said to be. */
async function openArchive(path: string, kind?: string): Promise<DockerArchiveReader | OciArchiveReader> {
  const tar = await TarFile.open(path);
  const docker = kind === undefined ? DockerArchiveReader.isDockerArchive(tar) : kind === "docker-archive";
  return docker ? DockerArchiveReader.fromTar(tar) : OciArchiveReader.fromTar(tar);
}

/** Opens the input by its transport prefix, or by what it is: a directory, a docker save tar, an oci-archive. */
async function openImportSource(arg: string): Promise<ImportSource & { only?: string }> {
  const prefixed = /^(oci|oci-archive|docker-archive):/.exec(arg);
  let path = arg;
  let only: string | undefined;
  let kind = prefixed?.[1];
  if (prefixed) {
    // containers/image splits at the first colon: the path cannot hold one
    const rest = arg.slice(prefixed[0].length);
    const colon = rest.indexOf(":");
    path = colon < 0 ? rest : rest.slice(0, colon);
    if (colon >= 0) only = rest.slice(colon + 1);
  }
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new UsageError(`${path} does not exist`);
  if (!kind && st.isDirectory()) kind = "oci";
  const opened = kind === "oci" ? await OciLayout.open(path) : await openArchive(path, kind);
  kind ??= opened instanceof DockerArchiveReader ? "docker-archive" : "oci-archive";
  const close = async () => {
    if (opened instanceof OciArchiveReader || opened instanceof DockerArchiveReader) await opened.close();
  };
  const label = `${kind}:${path}`;
  try {
    const images: SourceImage[] = [];
    if (opened instanceof DockerArchiveReader) {
      for (const i of opened.images) {
        for (const t of i.repoTags) images.push({ reference: t, name: t, srcRepo: "" });
        if (i.repoTags.length === 0) images.push({ reference: i.digest, srcRepo: "" });
      }
    } else {
      for (const { name } of await opened.refs())
        images.push({ reference: name, name, srcRepo: repoPart(name) });
      for (const d of await opened.unnamedImages()) images.push({ reference: d.digest, srcRepo: "" });
    }
    return { registry: opened, label, images, close, only };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `kagami import [oci:|oci-archive:|docker-archive:]PATH[:NAME]`. */
export async function importCommand(argv: string[]): Promise<number> {
  let opener: ReturnType<typeof localOpener> | undefined;
  let source: ImportSource | undefined;
  try {
    const { flags, positionals } = parseFlags(argv, importFlags);
    if (flags.help) {
      process.stdout.write(`${importUsage}\n`);
      return 0;
    }
    if (positionals.length !== 1)
      throw new UsageError("needs one argument: the archive file or layout directory");
    const repoFlag = typeof flags.repo === "string" ? flags.repo : undefined;
    const target = repoFlag === undefined ? undefined : splitRepoFlag(repoFlag);
    const referrers = flags.referrers !== false;
    const opened = await openImportSource(positionals[0]!);
    source = opened;
    const { label } = opened;
    let images = opened.images;
    if (opened.only !== undefined) {
      images = images.filter((i) => i.name === opened.only || i.reference === opened.only);
      if (images.length === 0) {
        const names = opened.images.flatMap((i) => (i.name ? [i.name] : []));
        throw new UsageError(
          `${label} has no image named '${opened.only}' (it has ${names.join(", ") || "none with a name"})`,
        );
      }
    }
    // cosign's tags come along with the image they sign, or stay behind with --no-referrers
    const kept: SourceImage[] = [];
    for (const i of images) {
      const m = cosignTag.exec(splitRefName(i.name ?? "").tag);
      const signed = m && (await opened.registry.headManifest("", `${m[1]}:${m[2]}`).catch(() => undefined));
      if (m && (!referrers || signed)) continue;
      kept.push(i);
    }
    images = kept;
    if (images.length === 0) throw new UsageError(`${label} holds no images`);
    if (target?.tag !== undefined && images.length > 1) {
      throw new UsageError(
        `--repo ${repoFlag} names one tag, but ${label} holds ${images.length} images (${images.map((i) => i.name ?? i.reference).join(", ")}); give only the repository, or pick one image as ${label}:NAME`,
      );
    }
    const plan = images.map((i) => {
      const split = i.name === undefined ? undefined : splitRefName(i.name);
      const repo = target?.repo ?? split?.repo;
      const tag = target?.tag ?? split?.tag ?? "latest";
      if (!repo) {
        throw new UsageError(
          split
            ? `image '${i.name}' in ${label} has only a tag; say which repository it goes to with --repo`
            : `image ${i.reference} in ${label} has no name; say where it goes with --repo REPO[:TAG]`,
        );
      }
      if (!isValidName(repo) || !isValidTag(tag)) {
        throw new UsageError(
          `image '${i.name ?? i.reference}' in ${label} is not REPO:TAG with a valid name; use --repo`,
        );
      }
      return { image: i, repo, tag };
    });
    const targets = new Map<string, SourceImage>();
    for (const p of plan) {
      const other = targets.get(`${p.repo}:${p.tag}`);
      if (other && other.reference !== p.image.reference) {
        throw new UsageError(
          `${other.name ?? other.reference} and ${p.image.name ?? p.image.reference} in ${label} would both become ${p.repo}:${p.tag}; import them one at a time with --repo REPO:TAG`,
        );
      }
      targets.set(`${p.repo}:${p.tag}`, p.image);
    }
    opener = localOpener(flags);
    const options = copyOptions(flags);
    options.referrers = referrers;
    options.platforms = { kind: "all" };
    for (const { image, repo, tag } of plan) {
      const src: OpenedEndpoint = {
        registry: opened.registry,
        repo: image.srcRepo,
        reference: image.reference,
        tags: [],
        name: `${label}:${image.name ?? image.reference}`,
        commit: async () => {},
        close: async () => {},
      };
      const dst: OpenedEndpoint = {
        registry: await opener.open(repo),
        repo,
        reference: tag,
        tags: [tag],
        name: `kagami://${repo}:${tag}`,
        commit: async () => {},
        close: async () => {},
      };
      await runCopy(src, dst, options, quiet(flags));
    }
    return 0;
  } catch (err) {
    return reportError("import", err);
  } finally {
    await source?.close();
    await opener?.close();
  }
}

/** `--repo REPO[:TAG]`, checked before any work. */
function splitRepoFlag(flag: string): { repo: string; tag?: string } {
  const repo = repoPart(flag) || flag;
  const tag = repo === flag ? undefined : flag.slice(repo.length + 1);
  if (!isValidName(repo) || (tag !== undefined && !isValidTag(tag))) {
    throw new UsageError(`--repo '${flag}' is not a valid repository name (REPO or REPO:TAG)`);
  }
  return tag === undefined ? { repo } : { repo, tag };
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
      // Each image is named REPO:TAG, so that import puts it back where it came from; its cosign
      // tags are named under the same REPO (the layout prefixes tags written with a repo).
      const named = repo && tag ? { repo, tags: [tag] } : { repo: "", tags: tag ? [tag] : [] };
      await runCopy(src, { ...dst, ...named }, options, quiet(flags));
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
