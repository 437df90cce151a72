export type Credentials =
  | { kind: "none" }
  | { kind: "basic"; user: string; password: string }
  | { kind: "bearer"; token: string }
  | { kind: "malformed"; reason: string };

/** Reads an `Authorization` header; anything that is not well-formed Basic or Bearer is reported, never thrown. */
export function parseAuthorization(header: string | undefined): Credentials {
  if (header === undefined || header === "") return { kind: "none" };
  const m = /^(\S+)\s+(\S+)$/.exec(header.trim());
  if (!m)
    return {
      kind: "malformed",
      reason: "the Authorization header is not of the form '<scheme> <credentials>'",
    };
  const scheme = m[1]!.toLowerCase();
  if (scheme === "bearer") return { kind: "bearer", token: m[2]! };
  if (scheme !== "basic") {
    return {
      kind: "malformed",
      reason: `authorization scheme '${m[1]!.slice(0, 20)}' is not supported; use Basic`,
    };
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(m[2]!)) {
    return { kind: "malformed", reason: "Basic credentials are not valid base64" };
  }
  const decoded = Buffer.from(m[2]!, "base64").toString("utf8");
  const idx = decoded.indexOf(":");
  if (idx < 0) return { kind: "malformed", reason: "Basic credentials must be user:password" };
  const user = decoded.slice(0, idx);
  const password = decoded.slice(idx + 1);
  // containers/image (skopeo, podman, buildah) answers a Basic challenge with ":" when it has no credentials.
  if (user === "" && password === "") return { kind: "none" };
  if (user === "") return { kind: "malformed", reason: "Basic credentials have an empty user name" };
  return { kind: "basic", user, password };
}
