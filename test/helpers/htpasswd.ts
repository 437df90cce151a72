import { execFileSync } from "node:child_process";
import { appendFileSync, writeFileSync } from "node:fs";

export type HashKind = "bcrypt" | "apr1" | "sha1" | "sha256" | "sha512";
const flag: Record<HashKind, string> = { bcrypt: "-B", apr1: "-m", sha1: "-s", sha256: "-2", sha512: "-5" };

/** One htpasswd line made by Apache's own `htpasswd` tool (Debian apache2-utils). */
export function htpasswdLine(user: string, password: string, kind: HashKind = "bcrypt"): string {
  return execFileSync("htpasswd", ["-nb", flag[kind], user, password], { encoding: "utf8" }).trim();
}

export function writeHtpasswd(
  path: string,
  accounts: [user: string, password: string, kind?: HashKind][],
): void {
  writeFileSync(path, `${accounts.map(([u, p, k]) => htpasswdLine(u, p, k)).join("\n")}\n`);
}

export function appendHtpasswd(
  path: string,
  user: string,
  password: string,
  kind: HashKind = "bcrypt",
): void {
  appendFileSync(path, `${htpasswdLine(user, password, kind)}\n`);
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}
