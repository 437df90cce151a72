import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";

/** Asks the kernel for a free loopback port; the tiny race with another binder is acceptable in tests. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        reject(new Error("no port"));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

/** Polls a URL until it answers with any HTTP status, or throws after the deadline. */
export async function waitForHttp(url: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (url.startsWith("https:")) {
        await new Promise<void>((resolve, reject) => {
          // Only "is it up?": the certificate is checked by the tests themselves.
          const req = httpsRequest(url, { rejectUnauthorized: false }, (res) => {
            res.resume();
            resolve();
          });
          req.on("error", reject);
          req.end();
        });
        return;
      }
      const res = await fetch(url);
      await res.arrayBuffer();
      return;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms: ${String(last)}`);
}
