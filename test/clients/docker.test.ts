/**
 * The docker CLI without a daemon: `docker manifest inspect|create|push` talk to the registry
 * directly. DOCKER_CONFIG points at a temp dir; `--insecure` is needed for plain HTTP (without
 * it the CLI only tries HTTPS for 127.0.0.1 and reports "no such manifest").
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
  headBlob,
  makeClientEnv,
  pushLayout,
  type Registry,
  run,
  runFailing,
  serverFailures,
  startRegistry,
} from "./common.ts";

interface VerboseEntry {
  Ref: string;
  Descriptor: { mediaType: string; digest: string; size: number; platform?: Record<string, string> };
  Raw: string;
  OCIManifest?: { config: { digest: string } };
  SchemaV2Manifest?: { config: { digest: string } };
}

describe.skipIf(!canRun("docker"))("docker CLI (no daemon)", () => {
  let reg: Registry;
  let ce: ClientEnv;
  let single: BuiltLayout;
  let multi: BuiltLayout;
  let other: BuiltLayout;

  const docker = (...args: string[]) => run("docker", args, { env: ce.env });
  const ref = (repoRef: string) => `${reg.host}/${repoRef}`;

  beforeAll(async () => {
    reg = await startRegistry("docker");
    ce = await makeClientEnv(reg.host);
    const layout = join(ce.dir, "layout");
    single = await buildImageLayout(layout, { tag: "v1" });
    multi = await buildImageLayout(layout, { tag: "multi", platforms: [LINUX_AMD64, LINUX_ARM64] });
    other = await buildImageLayout(layout, { tag: "other", platforms: [LINUX_ARM64], seed: "docker-other" });
    await pushLayout(reg.url, "docker/app", single);
    await pushLayout(reg.url, "docker/multi", multi, "latest");
    await pushLayout(reg.url, "docker/other", other, "arm");
  });

  afterAll(async () => {
    await reg?.stop();
    await ce?.cleanup();
  });

  it("inspects an OCI image manifest", async () => {
    const { stdout } = await docker("manifest", "inspect", "--insecure", ref("docker/app:v1"));
    expect(JSON.parse(stdout)).toEqual(JSON.parse(single.images[0]!.manifest.toString()));

    const verbose = JSON.parse(
      (await docker("manifest", "inspect", "--insecure", "-v", ref("docker/app:v1"))).stdout,
    );
    const entry = verbose as VerboseEntry;
    expect(entry.Descriptor.digest).toBe(single.digest);
    expect(sha256(Buffer.from(entry.Raw, "base64"))).toBe(single.digest);
  });

  it("inspects a multi-arch index and each platform manifest", async () => {
    const { stdout } = await docker("manifest", "inspect", "--insecure", ref("docker/multi:latest"));
    expect(JSON.parse(stdout)).toMatchObject({
      mediaType: MEDIA_TYPES.ociIndex,
      manifests: multi.images.map((img) => ({ digest: img.manifestDigest, platform: img.platform })),
    });

    const verbose = JSON.parse(
      (await docker("manifest", "inspect", "--insecure", "-v", ref("docker/multi:latest"))).stdout,
    ) as VerboseEntry[];
    expect(verbose).toHaveLength(2);
    for (const [i, entry] of verbose.entries()) {
      const img = multi.images[i]!;
      expect(entry.Descriptor.digest).toBe(img.manifestDigest);
      expect(entry.Descriptor.platform).toEqual(img.platform);
      expect(Buffer.from(entry.Raw, "base64")).toEqual(img.manifest);
      expect(entry.OCIManifest?.config.digest).toBe(img.configDigest);
    }

    const byDigest = await docker(
      "manifest",
      "inspect",
      "--insecure",
      ref(`docker/multi@${multi.images[1]!.manifestDigest}`),
    );
    expect(JSON.parse(byDigest.stdout).config.digest).toBe(multi.images[1]!.configDigest);
  });

  it("reports a missing manifest", async () => {
    const err = await runFailing("docker", ["manifest", "inspect", "--insecure", ref("docker/app:nope")], {
      env: ce.env,
    });
    expect(`${err.stdout}${err.stderr}`).toMatch(/no such manifest/);
  });

  it("creates and pushes a manifest list from images in other repositories", async () => {
    await docker(
      "manifest",
      "create",
      "--insecure",
      ref("docker/combined:1"),
      ref("docker/app:v1"),
      ref("docker/other:arm"),
    );
    await docker(
      "manifest",
      "annotate",
      "--arch",
      "arm64",
      "--variant",
      "v8",
      ref("docker/combined:1"),
      ref("docker/other:arm"),
    );
    const { stdout } = await docker("manifest", "push", "--insecure", ref("docker/combined:1"));
    const pushed = stdout.trim().split("\n").at(-1)!;
    expect(pushed).toMatch(/^sha256:[0-9a-f]{64}$/);

    const list = await getManifest(reg.url, "docker/combined", "1");
    expect(list.status).toBe(200);
    expect(list.digest).toBe(pushed);
    expect(sha256(list.body)).toBe(pushed);
    const doc = list.json();
    // docker 28 writes an OCI index when every child is an OCI manifest (older CLIs: a Docker list)
    expect([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]).toContain(doc.mediaType);
    expect(list.contentType).toBe(doc.mediaType);
    expect(doc.manifests?.map((m) => m.digest)).toEqual([single.digest, other.digest]);
    expect(doc.manifests?.map((m) => m.platform?.architecture)).toEqual(["amd64", "arm64"]);

    // the CLI mounted the blobs from docker/app and docker/other and pushed the children by digest
    for (const img of [single.images[0]!, other.images[0]!]) {
      const child = await getManifest(reg.url, "docker/combined", img.manifestDigest);
      expect(child.status).toBe(200);
      expect(child.body).toEqual(img.manifest);
      for (const d of [img.configDigest, ...img.layers.map((l) => l.digest)]) {
        expect((await headBlob(reg.url, "docker/combined", d)).status).toBe(200);
      }
    }
  });

  it("left no server-side failure in the registry log", () => {
    expect(serverFailures(reg)).toEqual([]);
  });
});
