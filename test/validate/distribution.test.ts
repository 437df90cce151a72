/** `kagami validate` against CNCF distribution: an open registry (no accounts) that allows deletes. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BuiltLayout, buildImageLayout, LINUX_AMD64, LINUX_ARM64 } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { hasTool } from "../helpers/tools.ts";
import { pushLayout, validateJson } from "./common.ts";

describe.runIf(hasTool("docker-registry"))("kagami validate against distribution", () => {
  let work: string;
  let dist: RunningDistribution;
  let image: BuiltLayout;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kagami-validate-dist-"));
    dist = await startDistribution();
    image = await buildImageLayout(join(work, "img"), { tag: "1", platforms: [LINUX_AMD64, LINUX_ARM64] });
    await pushLayout(image.ref, `${dist.host}/team/app:1`);
  });

  afterAll(async () => {
    await dist?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("pulls every platform and pushes, then deletes, as the read-write account", async () => {
    const { code, report } = await validateJson(
      "--registry",
      dist.url,
      "--image",
      "team/app:1",
      "--platform",
      "linux/arm64",
      "--anonymous=false",
      "--rw-creds",
      "someone:secret",
    );
    expect(code).toBe(0);
    expect(report.images[0]).toMatchObject({ status: "pass", platforms: ["linux/arm64/v8"] });
    expect(report.images[0]!.blobHosts).toEqual({ [dist.host]: 1 + image.images[1]!.layers.length });
    expect(report.access.map((a) => [a.check, a.status])).toEqual([
      ["rw-push", "pass"],
      ["cleanup", "pass"],
    ]);
    const tags = await fetch(`${dist.url}/v2/kagami-validate/scratch/tags/list`);
    const body = (await tags.json()) as { tags?: string[] | null };
    expect(body.tags ?? []).toEqual([]);
  });

  it("fails an open registry: anyone can push (and removes what the check pushed)", async () => {
    const { code, report } = await validateJson("--registry", dist.url, "--image", "team/app:1");
    expect(code).toBe(1);
    const byCheck = Object.fromEntries(report.access.map((a) => [a.check, a]));
    expect(byCheck["anonymous-ping"]!.status).toBe("pass");
    expect(byCheck["anonymous-pull"]!.status).toBe("pass");
    expect(byCheck["anonymous-push"]!.status).toBe("fail");
    expect(byCheck["anonymous-push"]!.message).toMatch(/anyone can push/);
    expect(byCheck.cleanup!.status).toBe("pass");
  });
});
