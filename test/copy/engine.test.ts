import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CopyEvent, copyImage } from "../../src/copy/copy.ts";
import { OciArchiveReader, OciArchiveWriter } from "../../src/layout/archive.ts";
import { OciLayout } from "../../src/layout/layout.ts";
import { LocalRegistry } from "../../src/registry/local.ts";
import {
  type BuiltLayout,
  blobPath,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  verifyLayout,
} from "../fixtures/images.ts";

const LINUX_S390X = { os: "linux", architecture: "s390x" };

function sha256(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

let work: string;
let multi: BuiltLayout;
let single: BuiltLayout;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kagami-copy-"));
  multi = await buildImageLayout(join(work, "src"), {
    tag: "multi",
    platforms: [LINUX_AMD64, LINUX_ARM64, LINUX_S390X],
  });
  single = await buildImageLayout(join(work, "src"), { tag: "single" });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("copy engine between layouts, archives and the local store", () => {
  it("round-trips an index layout → local → oci-archive → layout with every digest kept", async () => {
    const src = await OciLayout.open(join(work, "src"));
    const store = await LocalRegistry.open(join(work, "store1"));
    try {
      const events: CopyEvent[] = [];
      const r1 = await copyImage(
        { registry: src, repo: "", reference: "multi" },
        { registry: store, repo: "mirror/multi", tags: ["v1"] },
        { onEvent: (e) => events.push(e) },
      );
      expect(r1.digest).toBe(multi.digest);
      expect(r1.digestChanged).toBe(false);
      expect(r1.platforms).toHaveLength(3);
      expect(r1.blobs.copied).toBe(9);
      const plan = events.find((e) => e.type === "plan");
      expect(plan?.progress.blobsTotal).toBe(9);
      const last = events.at(-1)!;
      expect(last.progress.bytesDone).toBe(last.progress.bytesTotal);
      expect((await store.getManifest("mirror/multi", "v1"))?.digest).toBe(multi.digest);

      const archivePath = join(work, "out.tar");
      const writer = await OciArchiveWriter.create(archivePath);
      const r2 = await copyImage(
        { registry: store, repo: "mirror/multi", reference: "v1" },
        { registry: writer, repo: "", tags: ["mirror/multi:v1"] },
      );
      await writer.commit();
      expect(r2.digest).toBe(multi.digest);

      const reader = await OciArchiveReader.open(archivePath);
      expect((await reader.refs()).map((r) => r.name)).toEqual(["mirror/multi:v1"]);
      const dst = await OciLayout.open(join(work, "roundtrip"), { create: true });
      const r3 = await copyImage(
        { registry: reader, repo: "mirror/multi", reference: "v1" },
        { registry: dst, repo: "", tags: ["back"] },
      );
      expect(r3.digest).toBe(multi.digest);
      expect(await verifyLayout(join(work, "roundtrip"))).toBe(1 + 3 * 4);
      for (const img of multi.images) {
        const bytes = await readFile(blobPath(join(work, "roundtrip"), img.manifestDigest));
        expect(bytes.equals(img.manifest)).toBe(true);
      }
    } finally {
      store.close();
    }
  });

  it("skips blobs the destination has and mounts those it holds in another repository", async () => {
    const src = await OciLayout.open(join(work, "src"));
    const store = await LocalRegistry.open(join(work, "store2"));
    try {
      const first = await copyImage(
        { registry: src, repo: "", reference: "single" },
        { registry: store, repo: "a", tags: ["t"] },
      );
      expect(first.blobs).toEqual({ copied: 3, skipped: 0, mounted: 0 });
      const again = await copyImage(
        { registry: src, repo: "", reference: "single" },
        { registry: store, repo: "a", tags: ["t"] },
      );
      expect(again.blobs).toEqual({ copied: 0, skipped: 3, mounted: 0 });
      expect(again.bytesCopied).toBe(0);
      const other = await copyImage(
        { registry: src, repo: "", reference: "single" },
        { registry: store, repo: "b", tags: ["t"] },
      );
      expect(other.blobs).toEqual({ copied: 0, skipped: 0, mounted: 3 });
    } finally {
      store.close();
    }
  });

  it("copies one platform as its own manifest, several as a filtered index with a new digest", async () => {
    const src = await OciLayout.open(join(work, "src"));
    const dst = await OciLayout.open(join(work, "filtered"), { create: true });
    const arm = multi.images.find((i) => i.platform.architecture === "arm64")!;
    const one = await copyImage(
      { registry: src, repo: "", reference: "multi" },
      { registry: dst, repo: "", tags: ["arm"] },
      { platforms: { kind: "platforms", platforms: [{ os: "linux", architecture: "arm64" }] } },
    );
    expect(one.digest).toBe(arm.manifestDigest);
    expect(one.digestChanged).toBe(true);

    const warnings: string[] = [];
    const two = await copyImage(
      { registry: src, repo: "", reference: "multi" },
      { registry: dst, repo: "", tags: ["two"] },
      {
        platforms: { kind: "regex", regex: /^linux\/(amd64|arm64.*)$/ },
        onEvent: (e) => {
          if (e.type === "warning") warnings.push(e.message);
        },
      },
    );
    expect(two.digest).not.toBe(multi.digest);
    expect(two.digestChanged).toBe(true);
    expect(two.platforms).toEqual(["linux/amd64", "linux/arm64/v8"]);
    expect(warnings.join("\n")).toMatch(/new digest/);
    const idx = JSON.parse((await dst.getManifest("", "two"))!.bytes.toString()) as { manifests: unknown[] };
    expect(idx.manifests).toHaveLength(2);

    await expect(
      copyImage(
        { registry: src, repo: "", reference: "multi" },
        { registry: dst, repo: "", tags: ["none"] },
        { platforms: { kind: "platforms", platforms: [{ os: "windows", architecture: "amd64" }] } },
      ),
    ).rejects.toThrow(/no manifest in the index matches.*linux\/s390x/);
  });

  it("copies referrers and cosign signature tags along", async () => {
    const src = await OciLayout.open(join(work, "src"));
    const store = await LocalRegistry.open(join(work, "store3"));
    try {
      await copyImage(
        { registry: src, repo: "", reference: "single" },
        { registry: store, repo: "app", tags: ["1"] },
      );
      // an SBOM artifact referring to the image, and a cosign-style signature tag
      const empty = Buffer.from("{}");
      const { Readable } = await import("node:stream");
      await store.putBlob("app", sha256(empty), Readable.from([empty]));
      const sbom = Buffer.from('{"sbom":true}');
      await store.putBlob("app", sha256(sbom), Readable.from([sbom]));
      const referrer = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          artifactType: "application/spdx+json",
          config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(empty), size: 2 },
          layers: [{ mediaType: "application/spdx+json", digest: sha256(sbom), size: sbom.length }],
          subject: {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: single.digest,
            size: single.size,
          },
        }),
      );
      await store.putManifest(
        "app",
        sha256(referrer),
        referrer,
        "application/vnd.oci.image.manifest.v1+json",
      );
      const sig = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.empty.v1+json", digest: sha256(empty), size: 2 },
          layers: [
            {
              mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
              digest: sha256(sbom),
              size: sbom.length,
            },
          ],
        }),
      );
      const sigTag = `${single.digest.replace(":", "-")}.sig`;
      await store.putManifest("app", sigTag, sig, "application/vnd.oci.image.manifest.v1+json");

      const dst = await OciLayout.open(join(work, "with-referrers"), { create: true });
      const r = await copyImage(
        { registry: store, repo: "app", reference: "1" },
        { registry: dst, repo: "", tags: ["1"] },
        { referrers: true },
      );
      expect(r.referrers).toBe(2);
      const found = await dst.referrers("", single.digest);
      expect(found.map((d) => d.digest)).toEqual([sha256(referrer)]);
      expect(found[0]!.artifactType).toBe("application/spdx+json");
      expect((await dst.getManifest("", sigTag))?.digest).toBe(sha256(sig));

      // and back into another store: the referrers API sees it there too
      const store2 = await LocalRegistry.open(join(work, "store3b"));
      try {
        const back = await copyImage(
          { registry: dst, repo: "", reference: "1" },
          { registry: store2, repo: "app", tags: ["1"] },
          { referrers: true },
        );
        expect(back.referrers).toBe(2);
        expect((await store2.referrers("app", single.digest)).map((d) => d.digest)).toEqual([
          sha256(referrer),
        ]);
      } finally {
        store2.close();
      }
    } finally {
      store.close();
    }
  });

  it("refuses a corrupted source blob and leaves nothing of it at the destination", async () => {
    const dir = join(work, "corrupt");
    const built = await buildImageLayout(dir, { tag: "bad", random: true });
    const layer = built.images[0]!.layers[1]!;
    const bytes = await readFile(blobPath(dir, layer.digest));
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(blobPath(dir, layer.digest), bytes);
    const src = await OciLayout.open(dir);
    const store = await LocalRegistry.open(join(work, "store4"));
    try {
      const err = await copyImage(
        { registry: src, repo: "", reference: "bad", name: "oci:corrupt:bad" },
        { registry: store, repo: "victim", tags: ["bad"] },
        { retries: 1, retryDelayMs: 10 },
      ).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain("oci:corrupt:bad");
      expect((err as Error).message).toContain(layer.digest);
      expect((err as Error).message).toMatch(/corrupted/);
      expect(await store.blobSize("victim", layer.digest)).toBeUndefined();
      expect(await store.files.size(layer.digest)).toBeUndefined();
      expect(await store.getManifest("victim", "bad")).toBeUndefined();
    } finally {
      store.close();
    }
  });
});
