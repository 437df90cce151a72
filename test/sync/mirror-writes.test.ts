import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { ociManifest, type PushedImage, pushBlob, pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);

type SpecError = { errors: { code: string; message: string; detail?: Record<string, string> }[] };

function mirrorConfig(upstreamUrl: string, allowLocalWrites?: boolean): Record<string, unknown> {
  return {
    extensions: {
      sync: {
        enable: true,
        registries: [
          {
            urls: [upstreamUrl],
            onDemand: true,
            tlsVerify: false,
            maxRetries: 1,
            retryDelay: "50ms",
            content: [{ prefix: "/lib/**" }],
            ...(allowLocalWrites === undefined ? {} : { allowLocalWrites }),
          },
        ],
      },
    },
  };
}

describe.runIf(hasTool("docker-registry"))("writes into mirrored repositories", () => {
  let upstream: RunningDistribution;
  let mirror: RunningKagami;
  let img: PushedImage;

  beforeAll(async () => {
    upstream = await startDistribution();
    img = await pushImage(upstream.url, "lib/app", "v1");
    mirror = await startKagami({ config: mirrorConfig(upstream.url) });
    // Cached through the mirror, so the deletes below have something to delete.
    const pulled = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
    expect(pulled.headers.get("docker-content-digest")).toBe(img.digest);
    await pulled.arrayBuffer();
  });
  afterAll(async () => {
    await mirror?.destroy();
    await upstream?.stop();
  });

  async function expectRefused(res: Response, repo: string): Promise<void> {
    expect(res.status).toBe(403);
    const body = (await res.json()) as SpecError;
    expect(body.errors[0]!.code).toBe("DENIED");
    expect(body.errors[0]!.message).toContain(upstream.url);
    expect(body.errors[0]!.message).toContain("allowLocalWrites");
    expect(body.errors[0]!.detail).toEqual({ repository: repo, upstream: upstream.url });
  }

  it("refuses to start a blob upload, naming the upstream", async () => {
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/app/blobs/uploads/`, { method: "POST" }),
      "lib/app",
    );
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/new/blobs/uploads/?digest=${img.config}`, {
        method: "POST",
        body: "x",
      }),
      "lib/new",
    );
  });

  it("refuses a manifest PUT, so a push cannot pin a mirrored tag", async () => {
    const res = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`, {
      method: "PUT",
      body: img.manifest,
      headers: { "Content-Type": ociManifest },
    });
    await expectRefused(res, "lib/app");
  });

  it("refuses manifest and blob DELETEs and keeps serving upstream's content", async () => {
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/app/manifests/${img.digest}`, { method: "DELETE" }),
      "lib/app",
    );
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/app/manifests/v1`, { method: "DELETE" }),
      "lib/app",
    );
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/app/blobs/${img.config}`, { method: "DELETE" }),
      "lib/app",
    );
    const m = await fetch(`${mirror.url}/v2/lib/app/manifests/v1`);
    expect(m.status).toBe(200);
    expect(m.headers.get("docker-content-digest")).toBe(img.digest);
    await m.arrayBuffer();
  });

  it("refuses writes under the upstream's host, with containerd's ns and without", async () => {
    const hostName = `${upstream.host.replace(":", "-")}/lib/app`;
    await expectRefused(
      await fetch(`${mirror.url}/v2/${hostName}/blobs/uploads/`, { method: "POST" }),
      hostName,
    );
    await expectRefused(
      await fetch(`${mirror.url}/v2/lib/app/blobs/uploads/?ns=${upstream.host}`, { method: "POST" }),
      hostName,
    );
  });

  it("lets repositories no upstream serves take pushes and deletes", async () => {
    const local = await pushImage(mirror.url, "local/app", "v1");
    const del = await fetch(`${mirror.url}/v2/local/app/manifests/${local.digest}`, { method: "DELETE" });
    expect(del.status).toBe(202);
  });

  it.runIf(hasTool("skopeo"))("skopeo's push into a mirrored repository fails with the reason", async () => {
    const tls = ["--src-tls-verify=false", "--dest-tls-verify=false"];
    const src = `docker://${upstream.host}/lib/app:v1`;
    const refused = await run("skopeo", ["copy", ...tls, src, `docker://${mirror.host}/lib/app:pinned`]).then(
      () => undefined,
      (err: { stderr: string }) => err.stderr,
    );
    expect(refused).toMatch(/denied/i);
    expect(refused).toContain(upstream.url);
    await run("skopeo", ["copy", ...tls, src, `docker://${mirror.host}/local/copy:v1`]);
  });
});

describe.runIf(hasTool("docker-registry"))("writes into mirrored repositories with allowLocalWrites", () => {
  let upstream: RunningDistribution;
  let mirror: RunningKagami;

  beforeAll(async () => {
    upstream = await startDistribution();
    mirror = await startKagami({ config: mirrorConfig(upstream.url, true) });
  });
  afterAll(async () => {
    await mirror?.destroy();
    await upstream?.stop();
  });

  it("takes a push, and the pushed tag stays local content", async () => {
    const fromUpstream = await pushImage(upstream.url, "lib/pinned", "v1");
    const local = await pushImage(mirror.url, "lib/pinned", "v1");
    expect(local.digest).not.toBe(fromUpstream.digest);
    const m = await fetch(`${mirror.url}/v2/lib/pinned/manifests/v1`);
    expect(m.headers.get("docker-content-digest")).toBe(local.digest);
    await m.arrayBuffer();
    await pushBlob(mirror.url, "lib/pinned", Buffer.from("more"));
  });
});
