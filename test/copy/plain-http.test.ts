import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImageLayout, LINUX_AMD64 } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { kagamiBin, startKagami } from "../helpers/kagami.ts";
import { pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

/** The built CLI, as a person runs it: exit code and what it wrote to stderr. */
function kagami(...argv: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [kagamiBin, ...argv], { timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

describe.runIf(hasTool("docker-registry"))("an https:// request to a plain-HTTP registry", () => {
  let dist: RunningDistribution;
  let work: string;
  beforeAll(async () => {
    dist = await startDistribution();
    work = await mkdtemp(join(tmpdir(), "kagami-plain-http-"));
    await pushImage(dist.url, "lib/app", "v1");
  });
  afterAll(async () => {
    await dist?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("kagami copy names the flag that allows plain HTTP, for the side that needs it", async () => {
    const src = await kagami("copy", "-q", `docker://${dist.host}/lib/app:v1`, `oci:${join(work, "a")}:v1`);
    expect(src.code).toBe(1);
    expect(src.stderr).toContain(`the server at ${dist.host} answered in plain HTTP, not TLS`);
    expect(src.stderr).toContain("--src-tls-verify=false");

    const layout = join(work, "layout");
    await buildImageLayout(layout, { tag: "one", platforms: [LINUX_AMD64], random: true });
    const dst = await kagami("copy", "-q", `oci:${layout}:one`, `docker://${dist.host}/lib/pushed:1`);
    expect(dst.code).toBe(1);
    expect(dst.stderr).toContain("--dest-tls-verify=false");
    expect(dst.stderr).not.toContain("--src-tls-verify");

    // The advice works.
    const ok = await kagami(
      "copy",
      "-q",
      "--src-tls-verify=false",
      `docker://${dist.host}/lib/app:v1`,
      `oci:${join(work, "b")}:v1`,
    );
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
  }, 90_000);

  it("the mirror tells the client to write the upstream's URL as http://", async () => {
    const k = await startKagami({
      config: {
        extensions: {
          sync: {
            registries: [
              {
                urls: [`https://${dist.host}`],
                onDemand: true,
                tlsVerify: false,
                maxRetries: 0,
                retryDelay: "10ms",
              },
            ],
          },
        },
      },
    });
    try {
      const res = await fetch(`${k.url}/v2/lib/app/manifests/v1`);
      expect(res.status).toBeGreaterThanOrEqual(400);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.message).toContain("answered in plain HTTP, not TLS");
      expect(body.errors[0]!.message).toContain(
        `write the URL as http://${dist.host} in extensions.sync.registries[0].urls`,
      );
    } finally {
      await k.destroy();
    }
  }, 30_000);
});
