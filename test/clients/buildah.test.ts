/**
 * buildah (root, vfs storage in a temp dir) against a running registry: pull from the
 * registry and from an OCI layout, push (OCI and Docker schema 2; note that --disable-compression
 * has no effect towards a registry: containers/image always gzips layers for docker://), a
 * `buildah build` whose FROM comes from the registry and whose result is pushed back.
 *
 * Nothing runs a container (no RUN step): `--isolation chroot` and COPY/LABEL/ENV only need
 * the vfs storage, which works as root here without overlay, fuse or user namespaces.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { extract } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BuiltLayout,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  MEDIA_TYPES,
  sha256,
} from "../fixtures/images.ts";
import {
  type ClientEnv,
  canRun,
  getBlob,
  getManifest,
  layerDiffId,
  makeClientEnv,
  pushLayout,
  type Registry,
  run,
  serverFailures,
  startRegistry,
} from "./common.ts";

interface BuildahImage {
  FromImageID: string;
  FromImageDigest: string;
  OCIv1: {
    architecture: string;
    rootfs: { diff_ids: string[] };
    config: { Labels?: Record<string, string> };
  };
}

/** Names and contents of the regular files in a (possibly gzip'd) layer blob. */
async function layerFiles(blob: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const ex = extract();
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      if (entry.header.type === "file") files.set(entry.header.name, Buffer.concat(chunks).toString());
    }
  })();
  const src = Readable.from([blob]);
  if (blob[0] === 0x1f && blob[1] === 0x8b) src.pipe(createGunzip()).pipe(ex);
  else src.pipe(ex);
  await done;
  return files;
}

describe.skipIf(!canRun("buildah"))("buildah", () => {
  let reg: Registry;
  let ce: ClientEnv;
  let single: BuiltLayout;
  let multi: BuiltLayout;

  const buildah = (...args: string[]) => run("buildah", [...ce.storageFlags, ...args], { env: ce.env });
  const inspect = async (ref: string): Promise<BuildahImage> =>
    JSON.parse((await buildah("inspect", "--type", "image", ref)).stdout) as BuildahImage;
  const ref = (repoRef: string) => `${reg.host}/${repoRef}`;

  beforeAll(async () => {
    reg = await startRegistry("buildah");
    ce = await makeClientEnv(reg.host);
    const layoutDir = join(ce.dir, "layout");
    single = await buildImageLayout(layoutDir, { tag: "v1" });
    multi = await buildImageLayout(layoutDir, { tag: "multi", platforms: [LINUX_AMD64, LINUX_ARM64] });
    await pushLayout(reg.url, "buildah/multi", multi, "latest");
  });

  afterAll(async () => {
    await reg?.stop();
    await ce?.cleanup();
  });

  it("pulls a multi-arch image from the registry (the host's platform)", async () => {
    await buildah("pull", "--tls-verify=false", ref("buildah/multi:latest"));
    const img = await inspect(ref("buildah/multi:latest"));
    const amd = multi.images[0]!;
    expect(`sha256:${img.FromImageID}`).toBe(amd.configDigest);
    // the platform manifest buildah picked out of the index
    expect(img.FromImageDigest).toBe(amd.manifestDigest);
    expect(img.OCIv1.rootfs.diff_ids).toEqual(amd.layers.map((l) => l.diffId));
  });

  it("pulls from an OCI layout and pushes it as OCI and as Docker schema 2", async () => {
    // `buildah pull` prints the image ID last
    const id = (await buildah("pull", single.ref)).stdout.trim().split("\n").at(-1)!;
    const fx = single.images[0]!;
    expect(`sha256:${id}`).toBe(fx.configDigest);
    expect((await inspect(id)).OCIv1.rootfs.diff_ids).toEqual(fx.layers.map((l) => l.diffId));

    const cases = [
      { tag: "oci", format: "oci", mediaType: MEDIA_TYPES.ociManifest },
      { tag: "docker", format: "docker", mediaType: MEDIA_TYPES.dockerManifest },
    ];
    for (const c of cases) {
      await buildah(
        "push",
        "--tls-verify=false",
        "--format",
        c.format,
        id,
        `docker://${ref(`buildah/pushed:${c.tag}`)}`,
      );
      const m = await getManifest(reg.url, "buildah/pushed", c.tag);
      expect(m.status, c.tag).toBe(200);
      expect(m.contentType).toBe(c.mediaType);
      expect(m.digest).toBe(sha256(m.body));
      const doc = m.json();
      expect(doc.config?.digest).toBe(fx.configDigest);
      const diffIds = [];
      for (const l of doc.layers ?? []) diffIds.push(await layerDiffId(reg.url, "buildah/pushed", l.digest));
      expect(diffIds).toEqual(fx.layers.map((l) => l.diffId));
    }
  });

  it("builds FROM an image in the registry and pushes the result", async () => {
    const ctx = join(ce.dir, "ctx");
    await mkdir(ctx);
    await writeFile(join(ctx, "added.txt"), "added by buildah build\n");
    await writeFile(
      join(ctx, "Containerfile"),
      [
        `FROM ${ref("buildah/multi:latest")}`,
        "COPY added.txt /kagami/added.txt",
        "LABEL built.by=buildah",
        "ENV KAGAMI=1",
        "",
      ].join("\n"),
    );
    await buildah(
      "build",
      "--tls-verify=false",
      "--isolation",
      "chroot",
      "--pull",
      "-t",
      ref("buildah/built:1"),
      ctx,
    );
    await buildah("push", "--tls-verify=false", ref("buildah/built:1"));

    const m = await getManifest(reg.url, "buildah/built", "1");
    expect(m.status).toBe(200);
    const doc = m.json();
    const base = multi.images[0]!;
    expect(doc.layers).toHaveLength(base.layers.length + 1);
    // the base is the platform manifest buildah picked out of the index
    expect(doc.annotations?.["org.opencontainers.image.base.digest"]).toBe(base.manifestDigest);

    const config = await getBlob(reg.url, "buildah/built", doc.config!.digest);
    expect(config.status).toBe(200);
    const cfg = JSON.parse(config.body.toString());
    expect(cfg.config.Labels["built.by"]).toBe("buildah");
    expect(cfg.config.Env).toContain("KAGAMI=1");
    expect(cfg.rootfs.diff_ids.slice(0, -1)).toEqual(base.layers.map((l) => l.diffId));

    const top = await getBlob(reg.url, "buildah/built", doc.layers!.at(-1)!.digest);
    expect(sha256(top.body)).toBe(doc.layers!.at(-1)!.digest);
    const files = await layerFiles(top.body);
    expect(files.get("kagami/added.txt")).toBe("added by buildah build\n");
  });

  it("commits a working container straight to the registry", async () => {
    const ctr = (await buildah("from", "--pull=never", ref("buildah/multi:latest"))).stdout.trim();
    await buildah("config", "--label", "committed=yes", "--annotation", "kagami.test=commit", ctr);
    await buildah("commit", "--tls-verify=false", ctr, `docker://${ref("buildah/committed:1")}`);
    await buildah("rm", ctr);

    const m = await getManifest(reg.url, "buildah/committed", "1");
    expect(m.status).toBe(200);
    const doc = m.json();
    expect(doc.annotations?.["kagami.test"]).toBe("commit");
    const cfg = JSON.parse((await getBlob(reg.url, "buildah/committed", doc.config!.digest)).body.toString());
    expect(cfg.config.Labels.committed).toBe("yes");
    // buildah commit always adds a layer (empty here) over the base
    expect(cfg.rootfs.diff_ids.slice(0, 2)).toEqual(multi.images[0]!.layers.map((l) => l.diffId));
  });

  it("left no server-side failure in the registry log", () => {
    expect(serverFailures(reg)).toEqual([]);
  });
});
