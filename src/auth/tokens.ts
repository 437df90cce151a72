import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Identity } from "./policy.ts";

/** Seconds a token lasts; the docker client fetches a new one when it runs out. */
export const tokenLifetimeSeconds = 300;

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: Date;
}

interface Claims {
  /** The user the token speaks for; null for an anonymous token. */
  sub: string | null;
  /** Expiry, in seconds since the epoch. */
  exp: number;
}

/**
 * Bearer tokens that stand for an identity already checked (a password, or nobody). They carry no
 * rights of their own: every request is still decided by the access policy for the identity inside.
 * The key lives only in this process, so a restart makes clients fetch new tokens.
 */
export class TokenSigner {
  private readonly key = randomBytes(32);

  issue(who: Identity, now = Date.now()): IssuedToken {
    const claims: Claims = { sub: who?.user ?? null, exp: Math.floor(now / 1000) + tokenLifetimeSeconds };
    const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
    return { token: `${body}.${this.sign(body)}`, expiresIn: tokenLifetimeSeconds, issuedAt: new Date(now) };
  }

  /** The identity a token stands for, or null when it is forged, damaged or expired. */
  verify(token: string, now = Date.now()): { who: Identity } | null {
    const dot = token.indexOf(".");
    if (dot < 0) return null;
    const body = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = Buffer.from(this.sign(body), "base64url");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    let claims: Claims;
    try {
      claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Claims;
    } catch {
      return null;
    }
    if (typeof claims.exp !== "number" || claims.exp * 1000 <= now) return null;
    if (claims.sub === null) return { who: undefined };
    return typeof claims.sub === "string" ? { who: { user: claims.sub } } : null;
  }

  private sign(body: string): string {
    return createHmac("sha256", this.key).update(body).digest("base64url");
  }
}
