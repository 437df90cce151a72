import { describe, expect, it } from "vitest";
import { digestOf, parseDigest } from "../../src/oci/digest.ts";
import { RegistryError } from "../../src/oci/errors.ts";
import { maxManifestSize, parseManifest } from "../../src/oci/manifest.ts";
import { MediaType } from "../../src/oci/mediatypes.ts";
import { isValidName, isValidTag } from "../../src/oci/names.ts";
import { parseReference } from "../../src/oci/reference.ts";

const d1 = digestOf(Buffer.from("a"));
const d2 = digestOf(Buffer.from("b"));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof RegistryError) return err.code;
    throw err;
  }
  return undefined;
}

describe("names and tags", () => {
  it.each(["a", "library/ubuntu", "a.b_c__d-e--f/g", "0/1/2"])("accepts %s", (n) =>
    expect(isValidName(n)).toBe(true),
  );
  it.each(["", "A", "a/", "/a", "a//b", "a_-b", "a..b", "-a", "a___b", `${"a".repeat(256)}`])(
    "rejects %s",
    (n) => expect(isValidName(n)).toBe(false),
  );
  it("checks tags against the spec grammar", () => {
    expect(isValidTag("v1.2.3-rc_1")).toBe(true);
    expect(isValidTag("_x")).toBe(true);
    expect(isValidTag(".x")).toBe(false);
    expect(isValidTag("-x")).toBe(false);
    expect(isValidTag("a".repeat(128))).toBe(true);
    expect(isValidTag("a".repeat(129))).toBe(false);
  });
});

describe("digests and references", () => {
  it("parses sha256 and sha512", () => {
    expect(parseDigest(d1).algorithm).toBe("sha256");
    const s512 = digestOf(Buffer.from("a"), "sha512");
    expect(parseDigest(s512).hex).toHaveLength(128);
  });
  it.each([
    "sha256:abc",
    `sha256:${"A".repeat(64)}`,
    `md5:${"a".repeat(32)}`,
    "nodigest",
    `sha512:${"a".repeat(64)}`,
  ])("refuses %s with DIGEST_INVALID", (d) => expect(codeOf(() => parseDigest(d))).toBe("DIGEST_INVALID"));
  it("tells tags from digests", () => {
    expect(parseReference("latest")).toEqual({ kind: "tag", tag: "latest" });
    expect(parseReference(d1)).toEqual({ kind: "digest", digest: d1 });
    expect(codeOf(() => parseReference("sha256:zz"))).toBe("DIGEST_INVALID");
    expect(codeOf(() => parseReference(".bad"))).toBe("MANIFEST_INVALID");
  });
});

const image = (extra: Record<string, unknown> = {}) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: d1, size: 1 },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: d2, size: 1 }],
      ...extra,
    }),
  );

describe("manifest parsing", () => {
  it("lists config and layers of an image", () => {
    const m = parseManifest(image(), MediaType.ociManifest);
    expect(m.kind).toBe("image");
    expect(m.blobs.map((b) => b.digest)).toEqual([d1, d2]);
    expect(m.artifactType).toBe("application/vnd.oci.image.config.v1+json");
  });
  it("reads subject and artifactType", () => {
    const m = parseManifest(
      image({
        artifactType: "application/x-sbom",
        subject: { mediaType: MediaType.ociManifest, digest: d2, size: 9 },
      }),
      MediaType.ociManifest,
    );
    expect(m.subject?.digest).toBe(d2);
    expect(m.artifactType).toBe("application/x-sbom");
  });
  it("lists children of an index", () => {
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.ociIndex,
        manifests: [{ mediaType: MediaType.ociManifest, digest: d1, size: 3, platform: { os: "linux" } }],
      }),
    );
    const m = parseManifest(body, MediaType.ociIndex);
    expect(m.kind).toBe("index");
    expect(m.manifests.map((c) => c.digest)).toEqual([d1]);
  });
  it("takes the type from the body when Content-Type is generic", () => {
    expect(parseManifest(image(), "application/json").mediaType).toBe(MediaType.ociManifest);
  });
  it("skips foreign layers", () => {
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: d1, size: 1 },
        layers: [
          { mediaType: MediaType.dockerForeignLayer, digest: d2, size: 5, urls: ["https://example.com/l"] },
        ],
      }),
    );
    expect(parseManifest(body, MediaType.dockerManifest).blobs.map((b) => b.digest)).toEqual([d1]);
  });
  it.each([
    ["not JSON", Buffer.from("{"), MediaType.ociManifest],
    ["a mismatched Content-Type", image(), MediaType.dockerManifest],
    [
      "schema 1",
      Buffer.from(JSON.stringify({ schemaVersion: 1, name: "x", tag: "y", fsLayers: [] })),
      "application/json",
    ],
    [
      "a bad descriptor digest",
      image({ config: { mediaType: "x", digest: "sha256:1", size: 1 } }),
      MediaType.ociManifest,
    ],
    ["a negative size", image({ config: { mediaType: "x", digest: d1, size: -1 } }), MediaType.ociManifest],
    ["schemaVersion 3", image({ schemaVersion: 3 }), MediaType.ociManifest],
  ])("refuses %s with MANIFEST_INVALID", (_label, body, ct) => {
    expect(codeOf(() => parseManifest(body, ct))).toBe("MANIFEST_INVALID");
  });
  it("says why schema 1 is refused", () => {
    expect(() => parseManifest(Buffer.from('{"schemaVersion":1}'), MediaType.dockerSchema1Signed)).toThrow(
      /schema 1.*deprecated/,
    );
  });
  it("refuses manifests over 4 MiB with 413", () => {
    try {
      parseManifest(Buffer.alloc(maxManifestSize + 1, 32), MediaType.ociManifest);
      expect.unreachable();
    } catch (err) {
      expect((err as RegistryError).status).toBe(413);
    }
  });
});
