/**
 * skopeo (containers/image) against a running registry: OCI layout -> registry (OCI and
 * Docker schema 2), multi-arch with --all, registry -> dir:/oci: with identical digests,
 * repo-to-repo copy through a cross-repository blob mount, inspect, list-tags, delete, sync.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BuiltLayout,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  MEDIA_TYPES,
  MiB,
  sha256,
  verifyLayout,
} from "../fixtures/images.ts";
import {
  type ClientEnv,
  canRun,
  expectImageInRegistry,
  getBlob,
  getManifest,
  getTags,
  headBlob,
  makeClientEnv,
  type Registry,
  run,
  serverFailures,
  startRegistry,
} from "./common.ts";

describe.skipIf(!canRun("skopeo"))("skopeo", () => {
  let reg: Registry;
  let ce: ClientEnv;
  let layout: string;
  let single: BuiltLayout;
  let multi: BuiltLayout;
  let big: BuiltLayout;

  const skopeo = (...args: string[]) => run("skopeo", ["--policy", ce.policy, ...args], { env: ce.env });
  const docker = (repoRef: string) => `docker://${reg.host}/${repoRef}`;
  // REGISTRY_AUTH_FILE (set by makeClientEnv) keeps skopeo away from the default auth file
  const push = ["--dest-tls-verify=false"];
  const pull = ["--src-tls-verify=false"];

  beforeAll(async () => {
    reg = await startRegistry("skopeo");
    ce = await makeClientEnv(reg.host);
    layout = join(ce.dir, "layout");
    single = await buildImageLayout(layout, { tag: "v1" });
    multi = await buildImageLayout(layout, { tag: "multi", platforms: [LINUX_AMD64, LINUX_ARM64] });
    // 3 MiB + a small layer: bigger than one upload chunk of most clients
    big = await buildImageLayout(layout, { tag: "big", layerSizes: [3 * MiB, undefined], random: true });
  });

  afterAll(async () => {
    await reg?.stop();
    await ce?.cleanup();
  });

  it("copies an OCI image from an OCI layout into the registry unchanged", async () => {
    await skopeo("copy", ...push, single.ref, docker("skopeo/app:v1"));
    await expectImageInRegistry(reg.url, "skopeo/app", "v1", single);
    await expectImageInRegistry(reg.url, "skopeo/app", single.digest, single);

    await skopeo("copy", ...push, big.ref, docker("skopeo/big:latest"));
    await expectImageInRegistry(reg.url, "skopeo/big", "latest", big);
    const layer = big.images[0]!.layers[0]!;
    expect(await headBlob(reg.url, "skopeo/big", layer.digest)).toEqual({ status: 200, size: layer.size });
    const blob = await getBlob(reg.url, "skopeo/big", layer.digest);
    expect(blob.status).toBe(200);
    expect(blob.body.length).toBe(layer.size);
    expect(sha256(blob.body)).toBe(layer.digest);
  });

  it("converts to Docker schema 2 with --format v2s2", async () => {
    await skopeo("copy", ...push, "--format", "v2s2", single.ref, docker("skopeo/app:v2s2"));
    const m = await getManifest(reg.url, "skopeo/app", "v2s2");
    expect(m.status).toBe(200);
    expect(m.contentType).toBe(MEDIA_TYPES.dockerManifest);
    expect(m.digest).toBe(sha256(m.body));
    const doc = m.json();
    expect(doc.mediaType).toBe(MEDIA_TYPES.dockerManifest);
    const img = single.images[0]!;
    // the config bytes and the layer blobs are kept, only the manifest is rewritten
    expect(doc.config?.digest).toBe(img.configDigest);
    expect(doc.config?.mediaType).toBe(MEDIA_TYPES.dockerConfig);
    expect(doc.layers?.map((l) => l.digest)).toEqual(img.layers.map((l) => l.digest));
    expect(doc.layers?.every((l) => l.mediaType === MEDIA_TYPES.dockerLayerGzip)).toBe(true);
  });

  it("stores zstd-compressed layers (tar+zstd) and serves them back", async () => {
    // fresh content, so containers/image cannot substitute a gzip'd copy it already knows; from an
    // uncompressed dir: source, the destination compresses with the asked format
    const img = await buildImageLayout(join(ce.dir, "zstd-src"), { tag: "z", random: true });
    const plain = join(ce.dir, "zstd-plain");
    await skopeo("copy", "--dest-decompress", img.ref, `dir:${plain}`);
    await skopeo("copy", ...push, "--dest-compress-format", "zstd", `dir:${plain}`, docker("skopeo/zstd:1"));
    const m = await getManifest(reg.url, "skopeo/zstd", "1");
    expect(m.status).toBe(200);
    const doc = m.json();
    expect(doc.config?.digest).toBe(img.images[0]!.configDigest);
    expect(doc.layers?.map((l) => l.mediaType)).toEqual([
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.v1.tar+zstd",
    ]);
    for (const l of doc.layers ?? []) {
      const blob = await getBlob(reg.url, "skopeo/zstd", l.digest);
      expect(sha256(blob.body)).toBe(l.digest);
      expect(blob.body.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // zstd magic
    }
    // and back out, decompressed: the tars are the fixture's
    const back = join(ce.dir, "zstd-back");
    await skopeo("copy", ...pull, "--dest-decompress", docker("skopeo/zstd:1"), `dir:${back}`);
    for (const l of img.images[0]!.layers) {
      expect(sha256(await readFile(join(back, l.diffId.slice(7))))).toBe(l.diffId);
    }
  });

  it("copies a multi-arch index with --all", async () => {
    await skopeo("copy", ...push, "--all", multi.ref, docker("skopeo/multi:latest"));
    await expectImageInRegistry(reg.url, "skopeo/multi", "latest", multi);
    const idx = await getManifest(reg.url, "skopeo/multi", "latest");
    expect(idx.json().manifests?.map((d) => d.platform)).toEqual([LINUX_AMD64, LINUX_ARM64]);
  });

  it("inspects: --raw bytes, the resolved image, --config", async () => {
    const raw = await skopeo("inspect", "--tls-verify=false", "--raw", docker("skopeo/app:v1"));
    expect(sha256(raw.stdout)).toBe(single.digest);

    const info = JSON.parse((await skopeo("inspect", "--tls-verify=false", docker("skopeo/app:v1"))).stdout);
    expect(info.Digest).toBe(single.digest);
    expect(info.RepoTags.sort()).toEqual(["v1", "v2s2"]);
    expect(info.Architecture).toBe("amd64");
    expect(info.Layers).toEqual(single.images[0]!.layers.map((l) => l.digest));

    const config = await skopeo(
      "inspect",
      "--tls-verify=false",
      "--config",
      "--raw",
      docker("skopeo/app:v1"),
    );
    expect(sha256(config.stdout)).toBe(single.images[0]!.configDigest);

    // platform selection through the index
    const arm = await skopeo(
      "--override-arch",
      "arm64",
      "--override-variant",
      "v8",
      "inspect",
      "--tls-verify=false",
      "--config",
      "--raw",
      docker("skopeo/multi:latest"),
    );
    expect(sha256(arm.stdout)).toBe(multi.images[1]!.configDigest);
    const multiInfo = JSON.parse(
      (await skopeo("inspect", "--tls-verify=false", docker("skopeo/multi:latest"))).stdout,
    );
    expect(multiInfo.Digest).toBe(multi.digest);
    expect(multiInfo.Layers).toEqual(multi.images[0]!.layers.map((l) => l.digest));
  });

  it("copies registry -> dir: and -> oci: with byte-identical manifests", async () => {
    const dir = join(ce.dir, "out-dir");
    await skopeo("copy", ...pull, docker("skopeo/app:v1"), `dir:${dir}`);
    const manifest = await readFile(join(dir, "manifest.json"));
    expect(sha256(manifest)).toBe(single.digest);
    const img = single.images[0]!;
    for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
      const hex = d.slice("sha256:".length);
      expect(sha256(await readFile(join(dir, hex)))).toBe(d);
    }

    const oci = join(ce.dir, "out-oci");
    await skopeo("copy", ...pull, "--all", docker("skopeo/multi:latest"), `oci:${oci}:copied`);
    const index = JSON.parse(await readFile(join(oci, "index.json"), "utf8"));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].digest).toBe(multi.digest);
    expect(await readFile(join(oci, "blobs/sha256", multi.digest.slice(7)))).toEqual(multi.index);
    // every blob the fixture wrote came back byte-for-byte
    const blobs = new Set(await readdir(join(oci, "blobs/sha256")));
    for (const d of multi.blobs) expect(blobs.has(d.slice(7))).toBe(true);
    expect(await verifyLayout(oci)).toBe(multi.blobs.length);
  });

  it("copies repo to repo inside the registry through a cross-repository mount", async () => {
    const { stderr } = await skopeo(
      "--debug",
      "copy",
      ...pull,
      ...push,
      docker("skopeo/app:v1"),
      docker("skopeo/mounted:v1"),
    );
    await expectImageInRegistry(reg.url, "skopeo/mounted", "v1", single);
    // containers/image remembers where it saw each layer and asks for a mount first
    const layerMounts = single.images[0]!.layers.map((l) =>
      stderr.includes(`mount=${encodeURIComponent(l.digest)}`),
    );
    expect(layerMounts).toEqual([true, true]);
    const mountOk = stderr.match(/\.\.\. mount OK/g) ?? [];
    expect(mountOk.length, `skopeo --debug:\n${stderr}`).toBe(2);
    if (reg.kind === "kagami") {
      // the server's request log agrees: two upload POSTs answered 201 Created (mounted), not 202
      const mounts = reg
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { method?: string; path?: string; status?: number })
        .filter(
          (r) => r.method === "POST" && r.path === "/v2/skopeo/mounted/blobs/uploads/" && r.status === 201,
        );
      expect(mounts).toHaveLength(2);
    }
  });

  it("lists tags", async () => {
    await skopeo("copy", ...pull, ...push, docker("skopeo/app:v1"), docker("skopeo/app:v1.1"));
    const out = JSON.parse((await skopeo("list-tags", "--tls-verify=false", docker("skopeo/app"))).stdout);
    expect(out.Repository).toBe(`${reg.host}/skopeo/app`);
    expect(out.Tags.sort()).toEqual(["v1", "v1.1", "v2s2"]);
    expect(await getTags(reg.url, "skopeo/app")).toEqual({ status: 200, tags: ["v1", "v1.1", "v2s2"] });
  });

  it("deletes an image: the manifest and its tags are gone", async () => {
    await skopeo("copy", ...push, single.ref, docker("skopeo/del:gone"));
    await skopeo("copy", ...push, "--format", "v2s2", single.ref, docker("skopeo/del:keep"));
    await skopeo("delete", "--tls-verify=false", docker("skopeo/del:gone"));

    expect((await getManifest(reg.url, "skopeo/del", single.digest)).status).toBe(404);
    expect((await getManifest(reg.url, "skopeo/del", "gone")).status).toBe(404);
    expect((await getTags(reg.url, "skopeo/del")).tags).toEqual(["keep"]);
    expect((await getManifest(reg.url, "skopeo/del", "keep")).status).toBe(200);
    // the same manifest in another repository is untouched
    expect((await getManifest(reg.url, "skopeo/app", single.digest)).status).toBe(200);
  });

  it("syncs a whole repository docker -> docker", async () => {
    const { stdout, stderr } = await skopeo(
      "sync",
      "--all",
      "--src",
      "docker",
      "--dest",
      "docker",
      ...pull,
      ...push,
      `${reg.host}/skopeo/app`,
      `${reg.host}/mirror`,
    );
    expect(`${stdout}${stderr}`).toMatch(/Synced 3 images from 1 sources/);
    expect((await getTags(reg.url, "mirror/app")).tags).toEqual(["v1", "v1.1", "v2s2"]);
    for (const tag of ["v1", "v1.1", "v2s2"]) {
      const a = await getManifest(reg.url, "skopeo/app", tag);
      const b = await getManifest(reg.url, "mirror/app", tag);
      expect(b.digest).toBe(a.digest);
    }
  });

  it("syncs from a YAML source list (tags and tag regex)", async () => {
    const yaml = join(ce.dir, "sync.yaml");
    await writeFile(
      yaml,
      [
        `${reg.host}:`,
        "  tls-verify: false",
        "  images:",
        '    skopeo/multi: ["latest"]',
        "  images-by-tag-regex:",
        "    skopeo/app: ^v1",
        "",
      ].join("\n"),
    );
    await skopeo("sync", "--all", "--src", "yaml", "--dest", "docker", ...push, yaml, `${reg.host}/fromyaml`);
    // the destination keeps the source's path below the registry host (without --scoped: the last component)
    expect((await getTags(reg.url, "fromyaml/app")).tags).toEqual(["v1", "v1.1"]);
    await expectImageInRegistry(reg.url, "fromyaml/multi", "latest", multi);
  });

  it("left no server-side failure in the registry log", () => {
    expect(serverFailures(reg)).toEqual([]);
  });
});
