import { parseDigest } from "./digest.ts";
import { RegistryError } from "./errors.ts";
import {
  baseMediaType,
  imageManifestTypes,
  indexTypes,
  isForeignLayer,
  isManifestType,
  MediaType,
  schema1Types,
} from "./mediatypes.ts";

/** The spec lets registries refuse large manifests; 4 MiB is what distribution and zot accept. */
export const maxManifestSize = 4 * 1024 * 1024;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
  platform?: Record<string, unknown>;
}

export interface ParsedManifest {
  mediaType: string;
  kind: "image" | "index";
  /** Config and layers that must be in the repository (foreign layers excluded). */
  blobs: Descriptor[];
  /** Children of an index. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** What the referrers API reports: artifactType, else the config's media type. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

const invalid = (message: string, detail?: unknown) =>
  new RegistryError("MANIFEST_INVALID", message, { detail });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== "string" || mediaType === "") throw invalid(`${where}.mediaType must be a string`);
  if (typeof digest !== "string") throw invalid(`${where}.digest must be a string`);
  try {
    parseDigest(digest);
  } catch (err) {
    throw invalid(`${where}.digest is invalid: ${(err as Error).message}`);
  }
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  const d: Descriptor = { mediaType, digest, size };
  if (v.urls !== undefined) {
    if (!Array.isArray(v.urls) || v.urls.some((u) => typeof u !== "string")) {
      throw invalid(`${where}.urls must be an array of strings`);
    }
    d.urls = v.urls as string[];
  }
  if (v.annotations !== undefined) d.annotations = parseAnnotations(v.annotations, `${where}.annotations`);
  if (typeof v.artifactType === "string") d.artifactType = v.artifactType;
  if (isObject(v.platform)) d.platform = v.platform;
  return d;
}

function parseAnnotations(v: unknown, where: string): Record<string, string> {
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== "string")) {
    throw invalid(`${where} must be an object of string values`);
  }
  return v as Record<string, string>;
}

function parseList(v: unknown, where: string, required: boolean): Descriptor[] {
  if (v === undefined || v === null) {
    if (required) throw invalid(`${where} is required`);
    return [];
  }
  if (!Array.isArray(v)) throw invalid(`${where} must be an array`);
  return v.map((d, i) => parseDescriptor(d, `${where}[${i}]`));
}

/**
 * Parses manifest bytes as pushed, decides their media type and lists what they reference.
 * The bytes themselves are never changed: the digest is over exactly what the client sent.
 */
export function parseManifest(body: Uint8Array, contentType: string | undefined): ParsedManifest {
  if (body.length > maxManifestSize) {
    throw new RegistryError(
      "MANIFEST_INVALID",
      `manifest is ${body.length} bytes; the limit is ${maxManifestSize}`,
      {
        status: 413,
      },
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
  } catch (err) {
    throw invalid(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw invalid("manifest must be a JSON object");

  const header = baseMediaType(contentType);
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  if (doc.mediaType !== undefined && typeof doc.mediaType !== "string")
    throw invalid("mediaType must be a string");

  if (schema1Types.has(header) || (declared && schema1Types.has(declared)) || doc.schemaVersion === 1) {
    throw invalid(
      "Docker schema 1 manifests are not accepted: the format is deprecated and unsafe (its signature does not cover a content digest). Push schema 2 or OCI, e.g. with `skopeo copy --format v2s2` or `--format oci`",
    );
  }

  let mediaType: string;
  if (isManifestType(header)) {
    if (declared !== undefined && declared !== header) {
      throw invalid(`Content-Type '${header}' does not match the manifest's mediaType '${declared}'`);
    }
    mediaType = header;
  } else if (declared !== undefined) {
    if (!isManifestType(declared)) throw invalid(`unsupported manifest mediaType '${declared}'`);
    mediaType = declared;
  } else if (Array.isArray(doc.manifests)) {
    mediaType = MediaType.ociIndex;
  } else if (isObject(doc.config)) {
    mediaType = MediaType.ociManifest;
  } else {
    throw invalid("cannot tell the manifest type: send a Content-Type header or a mediaType field");
  }

  if (mediaType !== MediaType.ociArtifact && doc.schemaVersion !== 2) {
    throw invalid("schemaVersion must be 2");
  }

  const parsed: ParsedManifest = {
    mediaType,
    kind: indexTypes.has(mediaType) ? "index" : "image",
    blobs: [],
    manifests: [],
  };
  if (doc.annotations !== undefined) parsed.annotations = parseAnnotations(doc.annotations, "annotations");
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== "string") throw invalid("artifactType must be a string");
    parsed.artifactType = doc.artifactType;
  }
  if (doc.subject !== undefined) parsed.subject = parseDescriptor(doc.subject, "subject");

  if (parsed.kind === "index") {
    parsed.manifests = parseList(doc.manifests, "manifests", true);
  } else if (mediaType === MediaType.ociArtifact) {
    parsed.blobs = parseList(doc.blobs, "blobs", false);
  } else {
    const config = parseDescriptor(doc.config, "config");
    const layers = parseList(doc.layers, "layers", mediaType === MediaType.dockerManifest);
    parsed.blobs = [config, ...layers.filter((l) => !isForeignLayer(l.mediaType, l.urls))];
    if (parsed.artifactType === undefined && imageManifestTypes.has(mediaType)) {
      parsed.artifactType = config.mediaType;
    }
  }
  return parsed;
}
