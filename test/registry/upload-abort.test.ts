/**
 * A client that goes away in the middle of an upload's body (its FIN ends the body early and leaves
 * the socket half open): the handler must see the request aborted, not wait for bytes that never
 * come. Otherwise the session stays busy for good ("another request is writing"), the request is
 * never logged or counted, and its file stays open.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { parsePrometheusText } from "../helpers/prom-text.ts";

describe("an upload whose client goes away mid-body", () => {
  let k: RunningKagami;
  beforeAll(async () => {
    k = await startKagami({ config: { extensions: { metrics: { enable: true } } } });
  });
  afterAll(() => k?.destroy());

  it("is logged and counted as 499, and the session can be resumed", async () => {
    const start = await fetch(`${k.url}/v2/abort/me/blobs/uploads/`, { method: "POST" });
    expect(start.status).toBe(202);
    const location = start.headers.get("location")!;
    const path = new URL(location, k.url).pathname;
    await new Promise<void>((resolve, reject) => {
      const s = connect(k.port, "127.0.0.1", () => {
        s.write(
          `PATCH ${path} HTTP/1.1\r\nHost: ${k.host}\r\nContent-Type: application/octet-stream\r\n` +
            `Content-Length: 100000\r\n\r\n${"x".repeat(1000)}`,
        );
        // Half-close: what a client that stops sending (or exits) does to the server's side.
        setTimeout(() => s.end(), 200);
      });
      s.on("error", () => {});
      s.on("close", () => resolve());
      setTimeout(() => reject(new Error("the server never closed the aborted upload's connection")), 10_000);
    });
    const logged = /"method":"PATCH"[^\n]*"status":499/;
    for (let i = 0; i < 100 && !logged.test(k.output()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(k.output()).toMatch(logged);

    const status = await fetch(`${k.url}${path}`);
    expect(status.status).toBe(204);
    const offset = Number(/^0-(\d+)$/.exec(status.headers.get("range") ?? "0--1")?.[1] ?? -1) + 1;
    const rest = Buffer.alloc(10, "y");
    const resume = await fetch(`${k.url}${path}`, {
      method: "PATCH",
      headers: {
        "Content-Type": "application/octet-stream",
        "Content-Range": `${offset}-${offset + rest.length - 1}`,
      },
      body: rest,
    });
    expect(resume.status, await resume.text()).toBe(202);

    const scrape = parsePrometheusText(await (await fetch(`${k.url}/metrics`)).text());
    expect(scrape.sum("kagami_http_requests_total", { kind: "upload", method: "PATCH", status: "499" })).toBe(
      1,
    );
    // Only what arrived counts in, not the length the aborted request declared.
    expect(scrape.sum("kagami_http_request_bytes_total", { kind: "upload" })).toBeLessThan(100_000);
  });
});
