import { parseTransport } from "../copy/transport.ts";
import { isDigest } from "../oci/digest.ts";
import { isValidName, isValidTag } from "../oci/names.ts";
import { ImageReferenceError, parseImageReference } from "../remote/reference.ts";
import { MappingError } from "./errors.ts";

/** Where images of a mapping live: a registry repository, oc's `file://` tree under --dir, or an OCI layout/archive. */
export type MirrorLocation =
  | { kind: "registry"; host: string; repo: string }
  | { kind: "file"; repo: string }
  | { kind: "oci" | "oci-archive"; path: string };

/** One side of a mapping line as oc reads it. */
export interface MirrorRef {
  location: MirrorLocation;
  tag?: string;
  digest?: string;
}

/** A source may also name a tag pattern (`*`), or no tag at all: every tag. */
export interface SourceSpec extends MirrorRef {
  pattern?: string;
  allTags?: boolean;
}

export function locationKey(l: MirrorLocation): string {
  switch (l.kind) {
    case "registry":
      return `${l.host}/${l.repo}`;
    case "file":
      return `file://${l.repo}`;
    default:
      return `${l.kind}:${l.path}`;
  }
}

/** The name of the place that holds the repository: a registry host, --dir, or the layout file. */
export function placeKey(l: MirrorLocation): string {
  return l.kind === "registry" ? l.host : l.kind === "file" ? "file://" : locationKey(l);
}

export function formatMirrorRef(r: MirrorRef): string {
  const base = locationKey(r.location);
  if (r.location.kind === "oci" || r.location.kind === "oci-archive") {
    const ref = r.digest ?? r.tag;
    return ref ? `${base}:${ref}` : base;
  }
  return `${base}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** A `:tag` at the end that holds a `*` (the characters oc allows there, plus the star). */
const patternTag = /:([\w.*-]+)$/;

function parseLayoutRef(s: string): MirrorRef | undefined {
  if (!s.startsWith("oci:") && !s.startsWith("oci-archive:")) return undefined;
  const t = parseTransport(s);
  if (t.transport !== "oci" && t.transport !== "oci-archive") return undefined;
  const out: MirrorRef = { location: { kind: t.transport, path: t.path } };
  if (t.reference && isDigest(t.reference)) out.digest = t.reference;
  else if (t.reference) out.tag = t.reference;
  return out;
}

/** `[file://][host[:port]/]repo[:tag][@digest]`, or `oci:`/`oci-archive:` PATH[:REF]. */
export function parseMirrorRef(input: string): MirrorRef {
  try {
    const layout = parseLayoutRef(input);
    if (layout) return layout;
    let rest = input;
    let file = false;
    if (rest.startsWith("file://")) {
      file = true;
      rest = rest.slice("file://".length).replace(/^\//, "");
    } else if (rest.startsWith("docker://")) {
      rest = rest.slice("docker://".length);
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) {
      throw new ImageReferenceError(`${rest.split("://")[0]}:// destinations are not supported`);
    }
    if (file) {
      // oc's file:// names a repository path under --dir: no registry host is taken from it.
      const r = parseImageReference(`file.invalid/${rest}`, { defaultTag: null });
      const out: MirrorRef = { location: { kind: "file", repo: r.repo } };
      if (r.tag) out.tag = r.tag;
      if (r.digest) out.digest = r.digest;
      return out;
    }
    const r = parseImageReference(rest, { defaultTag: null });
    const out: MirrorRef = { location: { kind: "registry", host: r.host, repo: r.repo } };
    if (r.tag) out.tag = r.tag;
    if (r.digest) out.digest = r.digest;
    return out;
  } catch (err) {
    if (err instanceof ImageReferenceError) {
      throw new MappingError(`"${input}" is not a valid image reference: ${err.message}`);
    }
    throw err;
  }
}

/** A source: a tag, a digest, a tag pattern with `*`, or no tag (every tag of the repository). */
export function parseSourceRef(input: string): SourceSpec {
  const m = patternTag.exec(input);
  if (m?.[1]?.includes("*")) {
    const parsed = parseMirrorRef(input.replace(patternTag, ":tag"));
    if (parsed.tag !== "tag" || parsed.digest) {
      throw new MappingError(`"${input}": a * is only allowed in the tag`);
    }
    return { location: parsed.location, pattern: m[1] };
  }
  const ref = parseMirrorRef(input);
  if (!ref.tag && !ref.digest) return { ...ref, allTags: true };
  return ref;
}

export function parseDestinationRef(input: string): MirrorRef {
  const ref = parseMirrorRef(input);
  if (ref.digest) {
    throw new MappingError(
      `"${input}": a destination cannot name a digest; give a tag, or leave the tag out to push by digest only`,
    );
  }
  if (ref.location.kind === "registry" && !isValidName(ref.location.repo)) {
    throw new MappingError(`"${input}": '${ref.location.repo}' is not a valid repository name`);
  }
  if (ref.tag && ref.location.kind !== "oci" && ref.location.kind !== "oci-archive" && !isValidTag(ref.tag)) {
    throw new MappingError(`"${input}": '${ref.tag}' is not a valid tag`);
  }
  return ref;
}

/** Whether a tag matches a source pattern: `*` is any run of characters, the rest literal, whole tag. */
export function tagMatches(pattern: string, tag: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map(escapeRegex).join(".*")}$`);
  return re.test(tag);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
