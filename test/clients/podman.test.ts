/**
 * podman (root, vfs storage in a temp dir) against a running registry: pull by tag and by
 * digest, pick a platform out of a multi-arch index, push (OCI and Docker schema 2),
 * manifest lists, search (catalog) and tag listing.
 *
 * What podman needs in this sandbox: nothing beyond an isolated storage (`--root`, `--runroot`,
 * `--storage-driver vfs`: no overlay/fuse needed), `--tls-verify=false` for the plain-HTTP
 * registry, and a containers.conf with `events_logger = "none"` / `cgroup_manager = "cgroupfs"`
 * (see makeClientEnv). Image transfer works fully. What does NOT work here, and is not
 * tested: `podman run` — crun fails with `setrlimit RLIMIT_NOFILE: Operation not permitted`
 * (also with `--ulimit host`), the sandbox does not let the runtime set rlimits. Running a
 * container says nothing about the registry anyway.
 */
import { join } from "node:path";
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
  getManifest,
  getTags,
  headBlob,
  layerDiffId,
  makeClientEnv,
  pushLayout,
  type Registry,
  run,
  serverFailures,
  startRegistry,
} from "./common.ts";

interface PodmanImage {
  Id: string;
  Digest: string;
  RepoDigests: string[];
  Architecture: string;
  RootFS: { Layers: string[] };
  Labels?: Record<string, string>;
}

describe.skipIf(!canRun("podman"))("podman", () => {
  let reg: Registry;
  let ce: ClientEnv;
  let single: BuiltLayout;
  let multi: BuiltLayout;

  const podman = (...args: string[]) => run("podman", [...ce.storageFlags, ...args], { env: ce.env });
  const inspect = async (ref: string): Promise<PodmanImage> => {
    const out = JSON.parse((await podman("image", "inspect", ref)).stdout) as PodmanImage[];
    return out[0]!;
  };
  const ref = (repoRef: string) => `${reg.host}/${repoRef}`;

  beforeAll(async () => {
    reg = await startRegistry("podman");
    ce = await makeClientEnv(reg.host);
    const layout = join(ce.dir, "layout");
    single = await buildImageLayout(layout, { tag: "v1" });
    multi = await buildImageLayout(layout, { tag: "multi", platforms: [LINUX_AMD64, LINUX_ARM64] });
    await pushLayout(reg.url, "podman/app", single);
    await pushLayout(reg.url, "podman/multi", multi, "latest");
  });

  afterAll(async () => {
    await reg?.stop();
    await ce?.cleanup();
  });

  it("pulls by tag", async () => {
    await podman("pull", "--tls-verify=false", ref("podman/app:v1"));
    const img = await inspect(ref("podman/app:v1"));
    const fx = single.images[0]!;
    expect(`sha256:${img.Id}`).toBe(fx.configDigest);
    expect(img.Digest).toBe(single.digest);
    expect(img.RootFS.Layers).toEqual(fx.layers.map((l) => l.diffId));
  });

  it("pulls by digest", async () => {
    await podman("pull", "--tls-verify=false", ref(`podman/app@${single.digest}`));
    const img = await inspect(ref(`podman/app@${single.digest}`));
    expect(img.RepoDigests).toContain(ref(`podman/app@${single.digest}`));
  });

  it("pulls the requested platform out of a multi-arch index", async () => {
    await podman("pull", "--tls-verify=false", "--platform", "linux/arm64/v8", ref("podman/multi:latest"));
    const arm = await inspect(ref("podman/multi:latest"));
    expect(`sha256:${arm.Id}`).toBe(multi.images[1]!.configDigest);
    expect(arm.Architecture).toBe("arm64");
    expect(arm.RootFS.Layers).toEqual(multi.images[1]!.layers.map((l) => l.diffId));

    await podman("pull", "--tls-verify=false", "--arch", "amd64", ref("podman/multi:latest"));
    const amd = await inspect(ref("podman/multi:latest"));
    expect(`sha256:${amd.Id}`).toBe(multi.images[0]!.configDigest);
  });

  it("pushes a local image (OCI and Docker schema 2)", async () => {
    const fx = single.images[0]!;
    for (const [tag, format, mediaType] of [
      ["oci", "oci", MEDIA_TYPES.ociManifest],
      ["docker", "v2s2", MEDIA_TYPES.dockerManifest],
    ] as const) {
      await podman(
        "push",
        "--tls-verify=false",
        "--format",
        format,
        ref("podman/app:v1"),
        ref(`podman/pushed:${tag}`),
      );
      const m = await getManifest(reg.url, "podman/pushed", tag);
      expect(m.status).toBe(200);
      expect(m.contentType).toBe(mediaType);
      expect(m.digest).toBe(sha256(m.body));
      const doc = m.json();
      // podman pushes from its storage: it may recompress the layers, but the config is kept and the
      // uncompressed layers are the fixture's
      expect(doc.config?.digest).toBe(fx.configDigest);
      expect(doc.layers).toHaveLength(fx.layers.length);
      for (const [i, l] of (doc.layers ?? []).entries()) {
        expect(await layerDiffId(reg.url, "podman/pushed", l.digest)).toBe(fx.layers[i]!.diffId);
        expect((await headBlob(reg.url, "podman/pushed", l.digest)).size).toBe(l.size);
      }
    }
    expect((await getTags(reg.url, "podman/pushed")).tags).toEqual(["docker", "oci"]);
  });

  it("round-trips: an image podman pushed pulls back into fresh storage", async () => {
    const other = await makeClientEnv(reg.host);
    try {
      await run("podman", [...other.storageFlags, "pull", "--tls-verify=false", ref("podman/pushed:oci")], {
        env: other.env,
      });
      const { stdout } = await run(
        "podman",
        [...other.storageFlags, "image", "inspect", ref("podman/pushed:oci")],
        {
          env: other.env,
        },
      );
      const img = (JSON.parse(stdout) as PodmanImage[])[0]!;
      expect(`sha256:${img.Id}`).toBe(single.images[0]!.configDigest);
      expect(img.RootFS.Layers).toEqual(single.images[0]!.layers.map((l) => l.diffId));
    } finally {
      await other.cleanup();
    }
  });

  it("creates and pushes a manifest list", async () => {
    await podman("manifest", "create", "kagami-list");
    await podman("manifest", "add", "--tls-verify=false", "kagami-list", `docker://${ref("podman/app:v1")}`);
    await podman(
      "manifest",
      "add",
      "--tls-verify=false",
      "kagami-list",
      `docker://${ref(`podman/multi@${multi.images[1]!.manifestDigest}`)}`,
    );
    await podman(
      "manifest",
      "push",
      "--all",
      "--tls-verify=false",
      "kagami-list",
      `docker://${ref("podman/list:1")}`,
    );

    const idx = await getManifest(reg.url, "podman/list", "1");
    expect(idx.status).toBe(200);
    expect(idx.digest).toBe(sha256(idx.body));
    const children = idx.json().manifests ?? [];
    expect(children.map((c) => c.digest)).toEqual([single.digest, multi.images[1]!.manifestDigest]);
    expect(children.map((c) => c.platform?.architecture)).toEqual(["amd64", "arm64"]);
    // --all copied the children (and so their blobs) into the list's repository
    for (const c of children) {
      const child = await getManifest(reg.url, "podman/list", c.digest);
      expect(child.status).toBe(200);
      expect(sha256(child.body)).toBe(c.digest);
      for (const l of child.json().layers ?? []) {
        expect((await headBlob(reg.url, "podman/list", l.digest)).status).toBe(200);
      }
    }
  });

  it("searches the catalog and lists tags", async () => {
    const { stdout } = await podman("search", "--tls-verify=false", "--format", "{{.Name}}", `${reg.host}/`);
    const names = stdout.split("\n").filter(Boolean);
    for (const repo of ["podman/app", "podman/multi", "podman/pushed", "podman/list"]) {
      expect(names).toContain(ref(repo));
    }
    // podman 4.3 ignores --format with --list-tags: a "NAME  TAG" table
    const tags = await podman("search", "--tls-verify=false", "--list-tags", ref("podman/pushed"));
    const rows = tags.stdout.split("\n").slice(1).filter(Boolean);
    expect(rows.map((r) => r.trim().split(/\s+/)).sort()).toEqual([
      [ref("podman/pushed"), "docker"],
      [ref("podman/pushed"), "oci"],
    ]);
  });

  it("left no server-side failure in the registry log", () => {
    expect(serverFailures(reg)).toEqual([]);
  });
});
