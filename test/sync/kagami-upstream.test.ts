import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushImage, sha256 } from "../helpers/push.ts";

/** A Kagami mirroring another Kagami: the upstream speaks our own API, monolithic pushes and all. */
describe("a Kagami upstream", () => {
  let upstream: RunningKagami;
  let mirror: RunningKagami;

  beforeAll(async () => {
    upstream = await startKagami();
    mirror = await startKagami({
      config: {
        extensions: {
          sync: {
            registries: [
              {
                urls: [upstream.url],
                onDemand: true,
                tlsVerify: false,
                pollInterval: "1h",
                content: [{ prefix: "/team/**", destination: "/up", stripPrefix: true }],
              },
            ],
          },
        },
      },
    });
  });
  afterAll(async () => {
    await mirror?.destroy();
    await upstream?.destroy();
  });

  it("pulls through on demand, digests unchanged, and serves the cache after the upstream stops", async () => {
    const img = await pushImage(upstream.url, "team/app", "v1", { layers: 2 });
    const m = await fetch(`${mirror.url}/v2/up/app/manifests/v1`);
    expect(m.status).toBe(200);
    expect(sha256(Buffer.from(await m.arrayBuffer()))).toBe(img.digest);
    for (const d of [img.config, ...img.layers]) {
      const b = await fetch(`${mirror.url}/v2/up/app/blobs/${d}`);
      expect(sha256(Buffer.from(await b.arrayBuffer()))).toBe(d);
    }
    await upstream.stop();
    const cached = await fetch(`${mirror.url}/v2/up/app/manifests/${img.digest}`);
    expect(cached.status).toBe(200);
    const missing = await fetch(`${mirror.url}/v2/up/app/manifests/v2`);
    expect(missing.status).toBe(502);
    expect(((await missing.json()) as { errors: { message: string }[] }).errors[0]!.message).toContain(
      upstream.url,
    );
  });
});
