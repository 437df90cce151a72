/**
 * Which address a request comes from. The socket's peer, unless that peer is one of our own
 * proxies: then X-Forwarded-For says, counted from its right end, since only the entries our
 * proxies appended can be believed (whatever a client sends comes first and proves nothing).
 */
import { type NetworkSet, normalizeIp } from "./networks.ts";

/** X-Forwarded-For from a trusted proxy that does not name a client address. Answered 400. */
export class ClientAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClientAddressError";
  }
}

export interface ClientAddressOptions {
  /** Peers whose X-Forwarded-For is believed. Empty: the header is never read. */
  trustedProxies: NetworkSet;
  /**
   * Which entry from the right of X-Forwarded-For is the client: 1 behind one proxy that appends
   * the address it saw (nginx `$proxy_add_x_forwarded_for`), 2 behind Google's load balancer, which
   * appends `<client>,<load balancer>` (what archeio reads).
   */
  trustedHops: number;
}

/**
 * The client's address. `peer` is the socket's remote address; `forwarded` the X-Forwarded-For
 * header (several headers joined with commas). Throws ClientAddressError rather than guess.
 */
export function clientAddress(
  peer: string | undefined,
  forwarded: string | undefined,
  opts: ClientAddressOptions,
): string {
  const socket = peer === undefined ? undefined : normalizeIp(peer);
  if (socket === undefined)
    throw new ClientAddressError(`the connection's address ${String(peer)} is not an IP`);
  if (forwarded === undefined || opts.trustedProxies.size === 0 || !opts.trustedProxies.has(socket))
    return socket;
  const list = forwarded
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (list.length === 0) throw new ClientAddressError("X-Forwarded-For is empty");
  if (list.length < opts.trustedHops) {
    throw new ClientAddressError(
      `X-Forwarded-For has ${list.length} address(es); the trusted proxies add ${opts.trustedHops}`,
    );
  }
  // Entries from the client's position rightwards were written by our proxies; each must be an address.
  const ours = list.slice(list.length - opts.trustedHops);
  const parsed = ours.map((s) => normalizeIp(s));
  const bad = ours.find((_, i) => parsed[i] === undefined);
  if (bad !== undefined)
    throw new ClientAddressError(
      `X-Forwarded-For entry ${JSON.stringify(bad.slice(0, 64))} is not an IP address`,
    );
  return parsed[0]!;
}
