import { execFileSync } from "node:child_process";
import { createSign, randomUUID, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface TokenIssuer {
  /** The realm to configure in distribution: `http://127.0.0.1:PORT/token`. */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate distribution must trust (`auth.token.rootcertbundle`). */
  certPath: string;
  /** Token requests served (by scope string), for assertions on caching. */
  requests: { scope: string; account?: string; status: number }[];
  /** distribution's `auth:` block for this issuer. */
  yaml: string;
  stop(): Promise<void>;
}

export interface TokenIssuerOptions {
  /** Accounts allowed to push and pull; none: anyone, anonymously, may do anything. */
  users?: Record<string, string>;
  /** Lifetime of issued tokens in seconds (default 300). */
  expiresIn?: number;
  /** Where the signing key and certificate are written. */
  dir: string;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

/**
 * A small docker token service (the `auth.token` flow of distribution): GET /token?service&scope
 * with optional Basic credentials answers a JWT (RS256, x5c chain) granting the scopes asked for.
 */
export async function startTokenIssuer(opts: TokenIssuerOptions): Promise<TokenIssuer> {
  const keyPath = join(opts.dir, "issuer.key");
  const certPath = join(opts.dir, "issuer.crt");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      keyPath,
      "-out",
      certPath,
      "-days",
      "2",
      "-subj",
      "/CN=kagami-test-issuer",
    ],
    { stdio: "ignore" },
  );
  const key = readFileSync(keyPath, "utf8");
  const certDer = new X509Certificate(readFileSync(certPath)).raw;
  const service = "kagami-test-registry";
  const issuer = "kagami-test-issuer";
  const requests: TokenIssuer["requests"] = [];
  const expiresIn = opts.expiresIn ?? 300;

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const scopes = url.searchParams.getAll("scope");
    let account: string | undefined;
    const auth = req.headers.authorization;
    if (auth?.startsWith("Basic ")) {
      const decoded = Buffer.from(auth.slice(6), "base64").toString();
      const idx = decoded.indexOf(":");
      const user = decoded.slice(0, idx);
      if (!opts.users || opts.users[user] !== decoded.slice(idx + 1)) {
        requests.push({ scope: scopes.join(" "), account: user, status: 401 });
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ details: "wrong user name or password" }));
        return;
      }
      account = user;
    }
    const allowed = opts.users === undefined || account !== undefined;
    const access = allowed
      ? scopes.flatMap((s) => {
          const m = /^([^:]+):(.+):([^:]+)$/.exec(s);
          return m ? [{ type: m[1], name: m[2], actions: m[3]!.split(",") }] : [];
        })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "RS256", typ: "JWT", x5c: [certDer.toString("base64")] };
    const claims = {
      iss: issuer,
      sub: account ?? "",
      aud: service,
      exp: now + expiresIn,
      nbf: now - 5,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign("RSA-SHA256").update(signingInput).sign(key);
    const token = `${signingInput}.${b64url(signature)}`;
    const entry: TokenIssuer["requests"][number] = { scope: scopes.join(" "), status: 200 };
    if (account) entry.account = account;
    requests.push(entry);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        token,
        access_token: token,
        expires_in: expiresIn,
        issued_at: new Date().toISOString(),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const realm = `http://127.0.0.1:${port}/token`;
  return {
    realm,
    service,
    issuer,
    certPath,
    requests,
    yaml: [
      "auth:",
      "  token:",
      `    realm: ${realm}`,
      `    service: ${service}`,
      `    issuer: ${issuer}`,
      `    rootcertbundle: ${certPath}`,
    ].join("\n"),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
