import type { Server } from "node:http";

/**
 * zot's `http.readTimeout` and `http.writeTimeout`, as Go's http.Server means them: the request
 * (headers and body) must have arrived within readTimeout, and the response must be written
 * within writeTimeout of the request's headers. Past either the connection is closed, which is
 * all Go can do too once a response may be under way. Node's own requestTimeout is checked only
 * every connectionsCheckingInterval (30 s), too coarse for short limits, so each request gets
 * its own timers.
 */
export function applyHttpTimeouts(server: Server, readTimeoutMs?: number, writeTimeoutMs?: number): void {
  if (!readTimeoutMs && !writeTimeoutMs) return;
  server.on("request", (req, res) => {
    const timers: NodeJS.Timeout[] = [];
    const cut = () => req.socket.destroy();
    if (readTimeoutMs) {
      const t = setTimeout(cut, readTimeoutMs);
      timers.push(t);
      req.once("end", () => clearTimeout(t));
    }
    if (writeTimeoutMs) timers.push(setTimeout(cut, writeTimeoutMs));
    res.once("close", () => {
      for (const t of timers) clearTimeout(t);
    });
  });
}
