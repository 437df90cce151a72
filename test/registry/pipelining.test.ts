import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushBlob } from "../helpers/push.ts";

const garbage = Buffer.from("\x00\x01 this is not HTTP \x7f\r\n\r\n");

/** Everything the server sends on one connection until it closes it (or stays quiet for a while). */
function collect(socket: Socket, quietMs = 3_000): Promise<Buffer> {
  const parts: Buffer[] = [];
  return new Promise((resolve) => {
    let timer = setTimeout(done, quietMs);
    function done() {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(parts));
    }
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    });
    socket.on("close", done);
    socket.on("error", () => {});
  });
}

/**
 * The bytes must be one well-formed 200 whose body is the whole blob, and nothing after it: the
 * request read before the garbage is answered in full, then the connection is closed; never another
 * response spliced into (or put in place of) the blob.
 */
function expectWholeBlobThenClose(received: Buffer, blob: Buffer): void {
  const end = received.indexOf("\r\n\r\n");
  expect(end).toBeGreaterThan(0);
  const head = received.subarray(0, end).toString("latin1");
  expect(head.split("\r\n")[0]).toBe("HTTP/1.1 200 OK");
  expect(head).toMatch(new RegExp(`\r\ncontent-length: ${blob.length}\r\n`, "i"));
  const body = received.subarray(end + 4);
  expect(body.length).toBe(blob.length);
  // Compared as a prefix without printing 16 MiB on failure.
  const spliced = body.indexOf("HTTP/1.1 400");
  expect(spliced).toBe(-1);
  expect(body.equals(blob.subarray(0, body.length))).toBe(true);
}

describe("garbage pipelined behind a blob download", () => {
  let kagami: RunningKagami;
  const blob = randomBytes(16 * 1024 * 1024);
  let digest: string;

  beforeAll(async () => {
    kagami = await startKagami();
    digest = await pushBlob(kagami.url, "pipe/line", blob);
  }, 60_000);
  afterAll(() => kagami?.destroy());

  const request = () =>
    `GET /v2/pipe/line/blobs/${digest} HTTP/1.1\r\nHost: ${kagami.host}\r\nConnection: keep-alive\r\n\r\n`;

  it("in the same write as the request", async () => {
    const socket = connect(kagami.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const received = collect(socket);
    socket.write(Buffer.concat([Buffer.from(request()), garbage]));
    expectWholeBlobThenClose(await received, blob);
  });

  it("while the blob body is being sent", async () => {
    const socket = connect(kagami.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const first = new Promise((r) => socket.once("data", r));
    const received = collect(socket);
    socket.write(request());
    await first;
    // Hold the download so the server is certainly mid-body when the garbage arrives.
    socket.pause();
    socket.write(garbage);
    await new Promise((r) => setTimeout(r, 300));
    socket.resume();
    expectWholeBlobThenClose(await received, blob);
  });

  it("still answers garbage on an idle connection with a 400", async () => {
    const socket = connect(kagami.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const received = collect(socket);
    socket.write(garbage);
    const text = (await received).toString("latin1");
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(text).toContain('"code":"UNSUPPORTED"');
  });
});
