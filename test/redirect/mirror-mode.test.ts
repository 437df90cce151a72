/**
 * Redirect rules in mirror mode: a Kagami with its own storage sends blob reads from a rule's
 * networks to the copy near them, after access control, and only for blobs the repository holds;
 * everything else is served as always.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { type PushedImage, pushBlob, pushImage, sha256 } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const peers = ["nginx", "htpasswd"].every((t) => hasTool(t));

describe.skipIf(!peers)("redirect rules in mirror mode", () => {
  let copy: RunningNginx;
  let kagami: RunningKagami;
  let pub: PushedImage;
  let onlyPrivate: string;
  const eu = { "X-Forwarded-For": "10.1.2.3" };
  const copyUrl = (d: string) => `${copy.url}/containers/images/${d}`;

  beforeAll(async () => {
    copy = await startNginx();
    const htpasswd = join(copy.root, "..", "htpasswd");
    writeHtpasswd(htpasswd, [["reader", "secret"]]);
    kagami = await startKagami({
      config: {
        http: {
          auth: { htpasswd: { path: htpasswd } },
          accessControl: {
            repositories: {
              "public/**": { anonymousPolicy: ["read", "create"] },
              // Anonymous pushes so the test needs no writer account; reading needs the reader.
              "private/**": {
                anonymousPolicy: ["create"],
                policies: [{ users: ["reader"], actions: ["read"] }],
              },
            },
          },
        },
        extensions: {
          redirect: {
            clientAddress: { trustedProxies: ["127.0.0.1/32"] },
            rules: [{ name: "eu", networks: ["10.1.0.0/16"], baseUrl: copy.url }],
          },
        },
      },
    });
    pub = await pushImage(kagami.url, "public/app", "v1", { layers: 2 });
    await pushImage(kagami.url, "private/app", "v1");
    onlyPrivate = await pushBlob(kagami.url, "private/app", Buffer.from("only in private"));
    // The copy holds every blob but the second layer.
    await mkdir(join(copy.root, "containers", "images"), { recursive: true });
    for (const d of [pub.config, pub.layers[0]!, onlyPrivate]) {
      const res = await fetch(`${kagami.url}/v2/${d === onlyPrivate ? "private" : "public"}/app/blobs/${d}`, {
        headers: { Authorization: basic("reader", "secret") },
      });
      await writeFile(join(copy.root, "containers", "images", d), Buffer.from(await res.arrayBuffer()));
    }
  }, 60_000);

  afterAll(async () => {
    await kagami?.destroy();
    await copy?.stop();
  });

  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    fetch(`${kagami.url}${path}`, { method, headers, redirect: "manual" });

  it("sends a rule's clients to the copy, GET and HEAD", async () => {
    for (const method of ["GET", "HEAD"]) {
      const res = await get(`/v2/public/app/blobs/${pub.layers[0]}`, eu, method);
      await res.arrayBuffer();
      expect([method, res.status, res.headers.get("location")]).toEqual([
        method,
        307,
        copyUrl(pub.layers[0]!),
      ]);
    }
  });

  it("serves locally what the copy lacks, and clients no rule holds", async () => {
    const missing = await get(`/v2/public/app/blobs/${pub.layers[1]}`, eu);
    expect(missing.status).toBe(200);
    expect(sha256(Buffer.from(await missing.arrayBuffer()))).toBe(pub.layers[1]);
    const elsewhere = await get(`/v2/public/app/blobs/${pub.layers[0]}`, { "X-Forwarded-For": "192.0.2.1" });
    expect(elsewhere.status).toBe(200);
    expect(sha256(Buffer.from(await elsewhere.arrayBuffer()))).toBe(pub.layers[0]);
  });

  it("never redirects manifests", async () => {
    const res = await get(`/v2/public/app/manifests/v1`, {
      ...eu,
      Accept: "application/vnd.oci.image.manifest.v1+json",
    });
    expect(res.status).toBe(200);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(pub.digest);
  });

  it("runs access control first, and the Location carries no credentials", async () => {
    const anonymous = await get(`/v2/private/app/blobs/${onlyPrivate}`, eu);
    await anonymous.arrayBuffer();
    expect([anonymous.status, anonymous.headers.get("location")]).toEqual([401, null]);
    const reader = await get(`/v2/private/app/blobs/${onlyPrivate}`, {
      ...eu,
      Authorization: basic("reader", "secret"),
    });
    await reader.arrayBuffer();
    expect([reader.status, reader.headers.get("location")]).toEqual([307, copyUrl(onlyPrivate)]);
  });

  it("does not redirect a blob the repository does not hold, even if the copy has it", async () => {
    const res = await get(`/v2/public/app/blobs/${onlyPrivate}`, eu);
    const body = (await res.json()) as { errors: { code: string }[] };
    expect([res.status, res.headers.get("location"), body.errors[0]!.code]).toEqual([
      404,
      null,
      "BLOB_UNKNOWN",
    ]);
  });

  it("answers a malformed X-Forwarded-For from a trusted proxy with 400", async () => {
    const res = await get(`/v2/public/app/blobs/${pub.layers[0]}`, { "X-Forwarded-For": "10.1.2.3.4" });
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(res.status).toBe(400);
    expect(body.errors[0]!.message).toMatch(/X-Forwarded-For entry "10.1.2.3.4" is not an IP address/);
  });
});
