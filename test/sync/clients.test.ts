/** Real clients pulling through the mirror images that only the upstream (CNCF distribution) has. */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ClientEnv,
  canRun,
  expectImageInRegistry,
  makeClientEnv,
  pushLayout,
  run,
} from "../clients/common.ts";
import { type BuiltLayout, buildImageLayout, LINUX_AMD64, LINUX_ARM64 } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

describe.runIf(hasTool("docker-registry") && canRun("skopeo"))("clients through the mirror", () => {
  let upstream: RunningDistribution;
  let mirror: RunningKagami;
  let ce: ClientEnv;
  let single: BuiltLayout;
  let multi: BuiltLayout;

  beforeAll(async () => {
    upstream = await startDistribution();
    mirror = await startKagami({
      config: {
        extensions: {
          sync: { enable: true, registries: [{ urls: [upstream.url], onDemand: true, tlsVerify: false }] },
        },
      },
    });
    ce = await makeClientEnv(mirror.host);
    single = await buildImageLayout(join(ce.dir, "layout"), { tag: "v1" });
    multi = await buildImageLayout(join(ce.dir, "layout"), {
      tag: "multi",
      platforms: [LINUX_AMD64, LINUX_ARM64],
    });
    await pushLayout(upstream.url, "upstream/only", single);
    await pushLayout(upstream.url, "upstream/multi", multi);
  });
  afterAll(async () => {
    await mirror?.destroy();
    await upstream?.stop();
    await ce?.cleanup();
  });

  it("skopeo copies an image nobody pushed to the mirror, digests unchanged", async () => {
    const out = join(ce.dir, "pulled");
    await run(
      "skopeo",
      [
        "--policy",
        ce.policy,
        "copy",
        "--src-tls-verify=false",
        `docker://${mirror.host}/upstream/only:v1`,
        `dir:${out}`,
      ],
      { env: ce.env },
    );
    const raw = await run(
      "skopeo",
      ["inspect", "--tls-verify=false", "--raw", `docker://${mirror.host}/upstream/only:v1`],
      {
        env: ce.env,
      },
    );
    expect(raw.stdout).toBe(single.images[0]!.manifest.toString());
    await expectImageInRegistry(mirror.url, "upstream/only", "v1", single);
  });

  it("skopeo copies a multi-arch index with --all through the mirror", async () => {
    await run(
      "skopeo",
      [
        "--policy",
        ce.policy,
        "copy",
        "--all",
        "--src-tls-verify=false",
        `docker://${mirror.host}/upstream/multi:multi`,
        `oci:${join(ce.dir, "multi-out")}:multi`,
      ],
      { env: ce.env },
    );
    await expectImageInRegistry(mirror.url, "upstream/multi", "multi", multi);
  });

  it.runIf(canRun("podman"))("podman pulls through the mirror", async () => {
    await run(
      "podman",
      [...ce.storageFlags, "pull", "--tls-verify=false", `${mirror.host}/upstream/only:v1`],
      {
        env: ce.env,
      },
    );
    const images = await run(
      "podman",
      [...ce.storageFlags, "images", "--format", "{{.Repository}}:{{.Tag}}"],
      {
        env: ce.env,
      },
    );
    expect(images.stdout).toContain(`${mirror.host}/upstream/only:v1`);
  });
});
