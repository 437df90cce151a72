/**
 * The seam the redirect rules plug into: the file service asks `redirectFor` about each file
 * request and sends the client on with a 307 when it names a place. The service runs in-process
 * on a loopback listener, with a stand-in decision, since the rules live in another module.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactHandler } from "../../src/server/artifacts.ts";
import { rawRequest } from "./raw-request.ts";

const root = mkdtempSync(join(tmpdir(), "kagami-artifacts-seam-"));
const asked: [string, string][] = [];
let server: Server;
let base: string;

beforeAll(async () => {
  mkdirSync(join(root, "release"), { recursive: true });
  writeFileSync(join(root, "release/stable.txt"), "v1.31.0\n");
  const handle = await artifactHandler({
    root,
    prefix: "/dl",
    listing: true,
    logger: pino({ level: "silent" }),
    redirectFor: async (path, ip) => {
      asked.push([path, ip ?? ""]);
      return path.endsWith(".txt") ? `https://copy.example/files/${path}` : undefined;
    },
  });
  server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/dl`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(root, { recursive: true, force: true });
});

describe("the redirect seam of the artifact service", () => {
  it("sends a file request where the decision says, with the path below the prefix and the client's address", async () => {
    const res = await fetch(`${base}/release/stable.txt`, {
      redirect: "manual",
      headers: { Authorization: "Basic dXNlcjpwYXNz" },
    });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe("https://copy.example/files/release/stable.txt");
    expect(asked.at(-1)).toEqual(["release/stable.txt", "127.0.0.1"]);
  });

  it("serves the file itself when the decision names no place, and never redirects a listing", async () => {
    asked.length = 0;
    writeFileSync(join(root, "release/kubectl"), "bin");
    const file = await fetch(`${base}/release/kubectl`, { redirect: "manual" });
    expect([file.status, await file.text()]).toEqual([200, "bin"]);
    const listing = await fetch(`${base}/release/`, { redirect: "manual" });
    expect(listing.status).toBe(200);
    await listing.arrayBuffer();
    expect(asked).toEqual([["release/kubectl", "127.0.0.1"]]);
  });

  it("decides nothing for a path it refuses", async () => {
    asked.length = 0;
    const res = await rawRequest(base, "/dl/release/%2e%2e/x.txt");
    expect(res.status).toBe(400);
    expect(asked).toEqual([]);
  });
});
