import { execFile } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyCommand } from "../../src/cli/copy.ts";
import { exportCommand, importCommand } from "../../src/cli/import-export.ts";
import { LocalRegistry } from "../../src/registry/local.ts";
import { makeClientEnv } from "../clients/common.ts";
import {
  type BuiltLayout,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  layoutTag,
  readLayoutBlob,
  sha256,
} from "../fixtures/images.ts";
import { cli } from "../helpers/cli.ts";
import { kagamiBin, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);
const haveTools = hasTool("skopeo") && hasTool("podman");

async function skopeoRaw(ref: string, ...flags: string[]): Promise<Buffer> {
  const { stdout } = await run("skopeo", ["inspect", "--raw", ...flags, ref], {
    encoding: "buffer",
    maxBuffer: 8 << 20,
  });
  return stdout;
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json";

/** Signs `subject` in `repo` the way cosign does (a `sha256-<hex>.sig` tag) and adds an SBOM referrer. */
async function signAndAttach(
  store: LocalRegistry,
  repo: string,
  subject: { digest: string; size: number; mediaType: string },
): Promise<{ sigTag: string; sigDigest: string; sbomDigest: string }> {
  const put = async (b: Buffer) => {
    await store.putBlob(repo, sha256(b), Readable.from([b]));
    return { digest: sha256(b), size: b.length };
  };
  const empty = await put(Buffer.from("{}"));
  const payload = await put(
    Buffer.from(JSON.stringify({ critical: { image: { "docker-manifest-digest": subject.digest } } })),
  );
  const sig = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...empty },
      layers: [
        {
          mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
          ...payload,
          annotations: { "dev.cosignproject.cosign/signature": "MEUCIQDfake" },
        },
      ],
    }),
  );
  const sigTag = `${subject.digest.replace(":", "-")}.sig`;
  await store.putManifest(repo, sigTag, sig, ociManifest);
  const spdx = await put(Buffer.from('{"spdxVersion":"SPDX-2.3"}'));
  const sbom = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      artifactType: "application/spdx+json",
      config: { mediaType: "application/vnd.oci.empty.v1+json", ...empty },
      layers: [{ mediaType: "application/spdx+json", ...spdx }],
      subject,
    }),
  );
  await store.putManifest(repo, sha256(sbom), sbom, ociManifest);
  return { sigTag, sigDigest: sha256(sig), sbomDigest: sha256(sbom) };
}

interface DockerArchiveImage {
  image: BuiltLayout;
  repoTags: string[];
}

/**
 * Writes what `docker save` writes for single-platform images: manifest.json and repositories
 * over uncompressed layer tars and the config JSON. `modern` is docker 25's form (everything
 * under blobs/sha256, with oci-layout and index.json beside); otherwise the classic form
 * (`<id>/layer.tar`, `<hex>.json`), where a layer two images share is a symlink to the first.
 */
async function writeDockerArchive(
  file: string,
  images: DockerArchiveImage[],
  modern: boolean,
): Promise<void> {
  const pack = tarPack();
  const done = pipeline(pack, createWriteStream(file));
  const add = (header: Parameters<typeof pack.entry>[0], body?: Buffer) =>
    new Promise<void>((resolve, reject) =>
      body === undefined
        ? pack.entry(header, (e) => (e ? reject(e) : resolve()))
        : pack.entry(header, body, (e) => (e ? reject(e) : resolve())),
    );
  const written = new Map<string, string>();
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  const ociEntries: unknown[] = [];
  for (const { image, repoTags } of images) {
    const img = image.images[0]!;
    const layers: string[] = [];
    for (const l of img.layers) {
      const tar = gunzipSync(await readLayoutBlob(image.dir, l.digest));
      const hex = l.diffId.slice("sha256:".length);
      const path = modern ? `blobs/sha256/${hex}` : `${sha256(`${image.tag}${hex}`).slice(7)}/layer.tar`;
      const first = written.get(hex);
      if (first && modern) {
        layers.push(first);
        continue;
      }
      if (first) await add({ name: path, type: "symlink", linkname: `../${first}` });
      else {
        if (!modern) await add({ name: `${path.split("/")[0]}/`, type: "directory" });
        await add({ name: path }, tar);
        written.set(hex, path);
      }
      layers.push(path);
    }
    const cfgHex = img.configDigest.slice("sha256:".length);
    const cfgPath = modern ? `blobs/sha256/${cfgHex}` : `${cfgHex}.json`;
    await add({ name: cfgPath }, img.config);
    manifest.push({ Config: cfgPath, RepoTags: repoTags, Layers: layers });
    for (const rt of repoTags) {
      const colon = rt.lastIndexOf(":");
      repositories[rt.slice(0, colon)] = { [rt.slice(colon + 1)]: layers.at(-1)!.split("/")[0]! };
    }
    if (modern) {
      await add({ name: `blobs/sha256/${img.manifestDigest.slice(7)}` }, img.manifest);
      ociEntries.push({
        mediaType: ociManifest,
        digest: img.manifestDigest,
        size: img.manifestSize,
        annotations: { "org.opencontainers.image.ref.name": repoTags[0]?.split(":").at(-1) },
      });
    }
  }
  if (modern) {
    await add({ name: "oci-layout" }, Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await add(
      { name: "index.json" },
      Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: ociEntries })),
    );
  }
  await add({ name: "manifest.json" }, Buffer.from(JSON.stringify(manifest)));
  await add({ name: "repositories" }, Buffer.from(JSON.stringify(repositories)));
  pack.finalize();
  await done;
}

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kagami-airgap-"));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe.skipIf(!haveTools)("air gap: export, import, and other tools' archives", () => {
  let multi: BuiltLayout;
  beforeAll(async () => {
    multi = await buildImageLayout(join(work, "src"), {
      tag: "multi",
      platforms: [LINUX_AMD64, LINUX_ARM64],
      random: true,
    });
  });

  it("a signed multi-arch image survives export → import → skopeo copy with its signature and referrers", async () => {
    const rootA = join(work, "siteA");
    const rootB = join(work, "siteB");
    const toA = await cli(copyCommand, "--all", "-q", "--root", rootA, multi.ref, "kagami://team/app:1");
    expect(toA.code, toA.stderr).toBe(0);
    const storeA = await LocalRegistry.open(rootA);
    let signed: Awaited<ReturnType<typeof signAndAttach>>;
    try {
      signed = await signAndAttach(storeA, "team/app", {
        digest: multi.digest,
        size: multi.size,
        mediaType: multi.mediaType,
      });
    } finally {
      storeA.close();
    }

    const archive = join(work, "signed.tar");
    const exp = await cli(exportCommand, "-q", "--root", rootA, "team/app:1", archive);
    expect(exp.code, exp.stderr).toBe(0);
    // every name in the archive says where it goes, the signature's too
    const index = JSON.parse(
      (await run("tar", ["xOf", archive, "index.json"], { maxBuffer: 1 << 20 })).stdout,
    ) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const names = index.manifests.map((m) => m.annotations?.["org.opencontainers.image.ref.name"]);
    expect(names).toContain("team/app:1");
    expect(names).toContain(`team/app:${signed.sigTag}`);
    expect(index.manifests.map((m) => m.digest)).toContain(signed.sbomDigest);

    const imp = await cli(importCommand, "-q", "--root", join(rootB, "data"), archive);
    expect(imp.code, imp.stderr).toBe(0);

    // kagami copy --referrers writes cosign tags bare, as in older exports: import still finds them
    const copied = join(work, "copied.tar");
    const cp = await cli(
      copyCommand,
      "-q",
      "--all",
      "--referrers",
      "--root",
      rootA,
      "kagami://team/app:1",
      `oci-archive:${copied}:team/app:1`,
    );
    expect(cp.code, cp.stderr).toBe(0);
    const rootC = join(work, "siteC");
    const impC = await cli(importCommand, "-q", "--root", rootC, copied);
    expect(impC.code, impC.stderr).toBe(0);
    const storeC = await LocalRegistry.open(rootC);
    try {
      expect((await storeC.getManifest("team/app", signed.sigTag))?.digest).toBe(signed.sigDigest);
      expect((await storeC.referrers("team/app", multi.digest)).map((d) => d.digest)).toEqual([
        signed.sbomDigest,
      ]);
    } finally {
      storeC.close();
    }

    if (!existsSync(kagamiBin)) {
      if (process.env.CI === "true") throw new Error(`${kagamiBin} is missing: run npm run build first`);
      return;
    }
    const server = await startKagami({ rootDir: rootB });
    try {
      const pulled = join(work, "pulled");
      const tls = "--src-tls-verify=false";
      await run("skopeo", [
        "copy",
        "-q",
        "--all",
        tls,
        `docker://${server.host}/team/app:1`,
        `oci:${pulled}:1`,
      ]);
      expect(sha256(await skopeoRaw(`oci:${pulled}:1`))).toBe(multi.digest);
      for (const img of multi.images) {
        const man = await readFile(join(pulled, "blobs/sha256", img.manifestDigest.slice(7)));
        expect(sha256(man)).toBe(img.manifestDigest);
        const cfg = await readFile(join(pulled, "blobs/sha256", img.configDigest.slice(7)));
        expect(sha256(cfg)).toBe(img.configDigest);
        for (const l of img.layers)
          expect(existsSync(join(pulled, "blobs/sha256", l.digest.slice(7)))).toBe(true);
      }
      await run("skopeo", [
        "copy",
        "-q",
        tls,
        `docker://${server.host}/team/app:${signed.sigTag}`,
        `oci:${pulled}:sig`,
      ]);
      expect(sha256(await skopeoRaw(`oci:${pulled}:sig`))).toBe(signed.sigDigest);
      const res = await fetch(`${server.url}/v2/team/app/referrers/${multi.digest}`);
      expect(res.status).toBe(200);
      const referrers = (await res.json()) as { manifests: { digest: string; artifactType?: string }[] };
      expect(referrers.manifests.map((m) => m.digest)).toContain(signed.sbomDigest);
    } finally {
      await server.stop();
    }
  });

  it("imports an archive whose image has no name (skopeo's default) into the repository --repo names", async () => {
    const archive = join(work, "noname.tar");
    await run("skopeo", ["copy", "-q", "--all", multi.ref, `oci-archive:${archive}`]);
    const root = join(work, "noname-store");
    const refused = await cli(importCommand, "-q", "--root", root, archive);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/no name.*--repo/);
    const tagged = await cli(importCommand, "-q", "--root", root, "--repo", "team/app:7", archive);
    expect(tagged.code, tagged.stderr).toBe(0);
    const plain = await cli(importCommand, "-q", "--root", root, "--repo", "team/plain", archive);
    expect(plain.code, plain.stderr).toBe(0);

    // a tag-only name is renamed by REPO:TAG too, and a bad --repo is refused before any work
    const tagOnly = join(work, "tag-only.tar");
    await run("skopeo", ["copy", "-q", "--all", multi.ref, `oci-archive:${tagOnly}:v9`]);
    const renamed = await cli(importCommand, "-q", "--root", root, "--repo", "team/renamed:2", tagOnly);
    expect(renamed.code, renamed.stderr).toBe(0);
    const bad = await cli(importCommand, "-q", "--root", root, "--repo", "Team/App:x", archive);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--repo 'Team\/App:x'/);

    const store = await LocalRegistry.open(root);
    try {
      expect((await store.getManifest("team/app", "7"))?.digest).toBe(multi.digest);
      expect((await store.getManifest("team/plain", "latest"))?.digest).toBe(multi.digest);
      expect((await store.getManifest("team/renamed", "2"))?.digest).toBe(multi.digest);
    } finally {
      store.close();
    }
  });

  it("imports skopeo's docker-archive as the schema 2 image skopeo reads from it", async () => {
    const single = await buildImageLayout(join(work, "src"), { tag: "single", random: true });
    const archive = join(work, "skopeo-docker.tar");
    await run("skopeo", ["copy", "-q", single.ref, `docker-archive:${archive}:team/app:1`]);
    const site = join(work, "docker-site");
    const root = join(site, "data");
    const imp = await cli(importCommand, "-q", "--root", root, archive);
    expect(imp.code, imp.stderr).toBe(0);

    const theirs = JSON.parse((await skopeoRaw(`docker-archive:${archive}`)).toString()) as {
      layers: { mediaType: string }[];
    };
    const store = await LocalRegistry.open(root);
    try {
      // docker.io/team/app:1 in the archive: the registry host is dropped, as for oci-archives
      const ours = await store.getManifest("team/app", "1");
      expect(ours?.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
      // skopeo labels the uncompressed layers tar.gzip; Kagami says what they are, nothing else differs
      for (const l of theirs.layers) l.mediaType = "application/vnd.docker.image.rootfs.diff.tar";
      expect(ours?.bytes.toString()).toBe(JSON.stringify(theirs));
      // kagami copy reads docker-archive: as a source the same way
      const out = join(work, "from-docker-archive");
      const cp = await cli(copyCommand, "-q", `docker-archive:${archive}`, `oci:${out}:x`);
      expect(cp.code, cp.stderr).toBe(0);
      // (skopeo 1.9 reads only OCI manifests out of a layout, so the layout is checked directly)
      expect((await layoutTag(out, "x"))?.digest).toBe(ours?.digest);
      const doc = JSON.parse(ours!.bytes.toString()) as {
        config: { digest: string };
        layers: { digest: string }[];
      };
      for (const d of [doc.config, ...doc.layers]) {
        expect(sha256(await readLayoutBlob(out, d.digest))).toBe(d.digest);
      }
      const refused = await cli(copyCommand, "-q", `oci:${out}:x`, `docker-archive:${join(work, "no.tar")}`);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/docker-archive.*only.*source/);
    } finally {
      store.close();
    }

    // a real client pulls the uncompressed layers and sees the diff IDs the archive had
    if (!existsSync(kagamiBin)) return;
    const server = await startKagami({ rootDir: site });
    const ce = await makeClientEnv(server.host);
    try {
      const podman = (...args: string[]) => run("podman", [...ce.storageFlags, ...args], { env: ce.env });
      await podman("pull", "-q", "--tls-verify=false", `${server.host}/team/app:1`);
      const [info] = JSON.parse((await podman("image", "inspect", `${server.host}/team/app:1`)).stdout) as {
        Digest: string;
        RootFS: { Layers: string[] };
      }[];
      expect(info?.Digest).toBe(sha256(Buffer.from(JSON.stringify(theirs))));
      expect(info?.RootFS.Layers).toEqual(single.images[0]!.layers.map((l) => l.diffId));
    } finally {
      await ce.cleanup();
      await server.stop();
    }
  });

  it("imports what docker save writes, classic and docker 25's, several images and shared layers", async () => {
    const a = await buildImageLayout(join(work, "dsrc"), { tag: "a", random: true });
    const b = await buildImageLayout(join(work, "dsrc"), { tag: "b", random: true });
    for (const modern of [false, true]) {
      const archive = join(work, `docker-save-${modern ? "modern" : "classic"}.tar`);
      await writeDockerArchive(
        archive,
        [
          { image: a, repoTags: ["team/a:1", "docker.io/team/a:latest"] },
          { image: b, repoTags: ["registry.example:5000/team/b:2"] },
        ],
        modern,
      );
      const root = join(work, `docker-save-store-${modern}`);
      const imp = await cli(importCommand, "-q", "--root", root, archive);
      expect(imp.code, imp.stderr).toBe(0);
      const store = await LocalRegistry.open(root);
      try {
        for (const [repo, tag, image] of [
          ["team/a", "1", a],
          ["team/a", "latest", a],
          ["team/b", "2", b],
        ] as const) {
          const m = await store.getManifest(repo, tag);
          // the same image skopeo reads out of the archive, with the honest layer type
          const theirs = (
            await skopeoRaw(
              `docker-archive:${archive}:${repo === "team/a" ? "team/a:1" : "registry.example:5000/team/b:2"}`,
            )
          )
            .toString()
            .replaceAll("rootfs.diff.tar.gzip", "rootfs.diff.tar");
          expect(m?.bytes.toString()).toBe(theirs);
          const doc = JSON.parse(m!.bytes.toString()) as {
            config: { digest: string };
            layers: { digest: string }[];
          };
          expect(doc.config.digest).toBe(image.images[0]!.configDigest);
          expect(doc.layers.map((l) => l.digest)).toEqual(image.images[0]!.layers.map((l) => l.diffId));
          for (const l of doc.layers) expect(await store.blobSize(repo, l.digest)).toBeGreaterThan(0);
        }
      } finally {
        store.close();
      }
    }
  });
});

describe("docker-archive refusals", () => {
  async function archiveOf(file: string, entries: Record<string, Buffer>): Promise<string> {
    const pack = tarPack();
    const done = pipeline(pack, createWriteStream(file));
    for (const [name, body] of Object.entries(entries)) pack.entry({ name }, body);
    pack.finalize();
    await done;
    return file;
  }

  it("refuses gzip-compressed layers and files manifest.json names but the archive lacks, saying which", async () => {
    const layer = gzipSync(Buffer.from("not really a tar"));
    const config = Buffer.from(JSON.stringify({ rootfs: { type: "layers", diff_ids: [sha256("x")] } }));
    const manifest = (layers: string[]) =>
      Buffer.from(JSON.stringify([{ Config: "c.json", RepoTags: ["team/app:1"], Layers: layers }]));
    const gz = await archiveOf(join(work, "gz-layer.tar"), {
      "c.json": config,
      "l/layer.tar": layer,
      "manifest.json": manifest(["l/layer.tar"]),
    });
    const root = join(work, "refusals");
    const r1 = await cli(importCommand, "-q", "--root", root, gz);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/layer l\/layer.tar is gzip-compressed/);
    const missing = await archiveOf(join(work, "missing-layer.tar"), {
      "c.json": config,
      "manifest.json": manifest(["gone/layer.tar"]),
    });
    const r2 = await cli(importCommand, "-q", "--root", root, missing);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/names gone\/layer.tar, which is not in the archive/);
  });
});
