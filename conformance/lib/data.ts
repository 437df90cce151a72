/**
 * Test content, generated fresh for every run (random bytes, so digests never collide with an
 * earlier run against the same registry). Shapes mirror the official suite's setup.go: one config
 * and one image manifest per workflow slot, a gzipped tar layer, an empty-layer manifest, the
 * `application/vnd.oci.empty.v1+json` blob and the referrers artifacts A/B (config and layer
 * flavours), C (subject not pushed) and an index artifact.
 */
import { createHash, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { env, runId } from "./env.ts";

export const MT = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  index: "application/vnd.oci.image.index.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
  empty: "application/vnd.oci.empty.v1+json",
} as const;

export function sha256(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export interface TestBlob {
  content: Buffer;
  contentLength: string;
  digest: string;
}

export function testBlob(content: Buffer | string): TestBlob {
  const buf = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return { content: buf, contentLength: String(buf.length), digest: sha256(buf) };
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  data?: string;
  newUnspecifiedField?: string;
}

/** Go's json.MarshalIndent(v, "", "\t") equivalent: tab-indented, so byte-exact storage is visible. */
function marshal(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v, null, "\t"));
}

function randomString(n: number): string {
  const letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-";
  return [...randomBytes(n)].map((b) => letters[b % letters.length]).join("");
}

/** A one-file ustar archive, gzipped: a real (if tiny) image layer with random content. */
function tarGz(fileName: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512, 0);
  const put = (s: string, off: number, len: number) => header.write(s, off, len, "ascii");
  put(fileName, 0, 100);
  put("0000644\0", 100, 8);
  put("0000000\0", 108, 8);
  put("0000000\0", 116, 8);
  put(`${content.length.toString(8).padStart(11, "0")}\0`, 124, 12);
  put(
    `${Math.floor(Date.now() / 1000)
      .toString(8)
      .padStart(11, "0")}\0`,
    136,
    12,
  );
  put("        ", 148, 8);
  put("0", 156, 1);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  let sum = 0;
  for (const b of header) sum += b;
  put(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512, 0);
  return gzipSync(Buffer.concat([header, content, pad, Buffer.alloc(1024, 0)]));
}

const NUM_SLOTS = 5;

/** configs[i]: a unique image config per slot (0 pull, 1 push, 2 discovery, 3 management, 4 referrers subject). */
export const configs: TestBlob[] = [];
for (let i = 0; i < NUM_SLOTS; i++) {
  const config = {
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [] as string[] },
    author: randomString(16),
  };
  configs.push(testBlob(marshal(config)));
}
if (env.blobDigest) {
  // The official suite lets OCI_BLOB_DIGEST stand in for the config digest (pull against existing content).
  for (const c of configs) c.digest = env.blobDigest;
}

export const layer = testBlob(tarGz("conformance.txt", Buffer.from(`layer ${runId} ${randomString(32)}\n`)));

const layerDescriptor: Descriptor = { mediaType: MT.layer, digest: layer.digest, size: layer.content.length };

function configDescriptor(c: TestBlob): Descriptor {
  return {
    mediaType: MT.config,
    digest: c.digest,
    size: c.content.length,
    // `data` must be the config content; the unknown field must be ignored by the registry.
    data: c.content.toString("base64"),
    newUnspecifiedField: Buffer.from("hello world").toString("base64"),
  };
}

/** manifests[i]: an image manifest with config i and the layer. */
export const manifests: TestBlob[] = configs.map((c) =>
  testBlob(
    marshal({
      schemaVersion: 2,
      mediaType: MT.manifest,
      config: configDescriptor(c),
      layers: [layerDescriptor],
    }),
  ),
);
if (env.manifestDigest) for (const m of manifests) m.digest = env.manifestDigest;

/** An image manifest with an empty layer list (no mediaType field, like the official one). */
export const emptyLayerManifest = testBlob(
  marshal({ schemaVersion: 2, config: configDescriptor(configs[1]!), layers: [] }),
);

export const nonexistentManifest = ".INVALID_MANIFEST_NAME";
export const invalidManifestContent = Buffer.from("blablabla");

/** Blob A (streamed upload) and blob B (chunked upload) for the push workflow. */
export const testBlobA = testBlob(randomBytes(42));

export interface ChunkedBlob {
  blob: TestBlob;
  chunk1: Buffer;
  chunk2: Buffer;
  chunk1Range: string;
  chunk2Range: string;
}

export function chunkedBlob(size: number): ChunkedBlob {
  const blob = testBlob(randomBytes(size));
  const split = Math.floor(size / 2) + 1;
  const chunk1 = blob.content.subarray(0, split);
  const chunk2 = blob.content.subarray(split);
  return {
    blob,
    chunk1,
    chunk2,
    chunk1Range: `0-${chunk1.length - 1}`,
    chunk2Range: `${chunk1.length}-${blob.content.length - 1}`,
  };
}

export const dummyDigest = sha256("hello world");

export const emptyJSON = testBlob("{}");
export const emptyJSONDescriptor: Descriptor = {
  mediaType: MT.empty,
  digest: emptyJSON.digest,
  size: emptyJSON.content.length,
};

export const testRefBlobA = testBlob(`NHL Peanut Butter on my NHL bagel ${runId}`);
export const testRefArtifactTypeA = "application/vnd.nhl.peanut.butter.bagel";
export const testRefBlobB = testBlob(`NBA Strawberry Jam on my NBA croissant ${runId}`);
export const testRefArtifactTypeB = "application/vnd.nba.strawberry.jam.croissant";
export const testRefArtifactTypeIndex = "application/vnd.food.stand";
export const testAnnotationKey = "org.opencontainers.conformance.test";
/** digest -> annotation value, for every referrer that carries one. */
export const testAnnotationValues = new Map<string, string>();

function subjectOf(m: TestBlob): Descriptor {
  return { mediaType: MT.manifest, size: m.content.length, digest: sha256(m.content) };
}

function artifact(fields: Record<string, unknown>, annotation?: string): TestBlob {
  const body: Record<string, unknown> = { schemaVersion: 2, mediaType: MT.manifest, ...fields };
  if (annotation) body.annotations = { [testAnnotationKey]: annotation };
  const b = testBlob(marshal(body));
  if (annotation) testAnnotationValues.set(b.digest, annotation);
  return b;
}

/** Referrers artifacts. Subject of A, B and the index is manifests[4]; C's subject (manifests[3]) is never pushed by discovery. */
export const refsManifestAConfigArtifact = artifact(
  {
    config: {
      mediaType: testRefArtifactTypeA,
      size: testRefBlobA.content.length,
      digest: testRefBlobA.digest,
    },
    layers: [emptyJSONDescriptor],
    subject: subjectOf(manifests[4]!),
  },
  "test config a",
);
export const refsManifestBConfigArtifact = artifact(
  {
    config: {
      mediaType: testRefArtifactTypeB,
      size: testRefBlobB.content.length,
      digest: testRefBlobB.digest,
    },
    layers: [emptyJSONDescriptor],
    subject: subjectOf(manifests[4]!),
  },
  "test config b",
);
export const refsManifestALayerArtifact = artifact(
  {
    artifactType: testRefArtifactTypeA,
    config: emptyJSONDescriptor,
    layers: [
      { mediaType: testRefArtifactTypeA, size: testRefBlobA.content.length, digest: testRefBlobA.digest },
    ],
    subject: subjectOf(manifests[4]!),
  },
  "test layer a",
);
export const refsManifestBLayerArtifact = artifact(
  {
    artifactType: testRefArtifactTypeB,
    config: emptyJSONDescriptor,
    layers: [
      { mediaType: testRefArtifactTypeB, size: testRefBlobB.content.length, digest: testRefBlobB.digest },
    ],
    subject: subjectOf(manifests[4]!),
  },
  "test layer b",
);
export const refsManifestCLayerArtifact = artifact({
  artifactType: testRefArtifactTypeB,
  config: emptyJSONDescriptor,
  layers: [
    { mediaType: testRefArtifactTypeB, size: testRefBlobB.content.length, digest: testRefBlobB.digest },
  ],
  subject: subjectOf(manifests[3]!),
});
export const refsIndexArtifact = (() => {
  const body = {
    schemaVersion: 2,
    mediaType: MT.index,
    artifactType: testRefArtifactTypeIndex,
    manifests: [
      {
        mediaType: MT.manifest,
        size: refsManifestAConfigArtifact.content.length,
        digest: refsManifestAConfigArtifact.digest,
      },
      {
        mediaType: MT.manifest,
        size: refsManifestALayerArtifact.content.length,
        digest: refsManifestALayerArtifact.digest,
      },
    ],
    subject: subjectOf(manifests[4]!),
    annotations: { [testAnnotationKey]: "test index" },
  };
  const b = testBlob(marshal(body));
  testAnnotationValues.set(b.digest, "test index");
  return b;
})();

/** What each referrer's descriptor in a referrers response must look like (artifactType rules of spec 1.1). */
export const expectedReferrers = new Map<string, { mediaType: string; size: number; artifactType?: string }>([
  [
    refsManifestAConfigArtifact.digest,
    {
      mediaType: MT.manifest,
      size: refsManifestAConfigArtifact.content.length,
      artifactType: testRefArtifactTypeA,
    },
  ],
  [
    refsManifestALayerArtifact.digest,
    {
      mediaType: MT.manifest,
      size: refsManifestALayerArtifact.content.length,
      artifactType: testRefArtifactTypeA,
    },
  ],
  [
    refsManifestBConfigArtifact.digest,
    {
      mediaType: MT.manifest,
      size: refsManifestBConfigArtifact.content.length,
      artifactType: testRefArtifactTypeB,
    },
  ],
  [
    refsManifestBLayerArtifact.digest,
    {
      mediaType: MT.manifest,
      size: refsManifestBLayerArtifact.content.length,
      artifactType: testRefArtifactTypeB,
    },
  ],
  [
    refsIndexArtifact.digest,
    { mediaType: MT.index, size: refsIndexArtifact.content.length, artifactType: testRefArtifactTypeIndex },
  ],
  [
    refsManifestCLayerArtifact.digest,
    {
      mediaType: MT.manifest,
      size: refsManifestCLayerArtifact.content.length,
      artifactType: testRefArtifactTypeB,
    },
  ],
]);

/** Tag names are unique per run so reruns against a registry that keeps old tags do not interfere. */
export function tagName(base: string): string {
  return `${base}-${runId}`;
}
