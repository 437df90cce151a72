/** A platform as `--platform` takes it: `os/arch[/variant]`. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function parsePlatform(spec: string): Platform {
  const parts = spec.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new Error(`platform '${spec}' is not of the form os/arch[/variant], e.g. linux/arm64/v8`);
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return p;
}

export function formatPlatform(
  p: { os?: unknown; architecture?: unknown; variant?: unknown } | undefined,
): string {
  if (!p) return "unknown/unknown";
  const os = typeof p.os === "string" ? p.os : "unknown";
  const arch = typeof p.architecture === "string" ? p.architecture : "unknown";
  return typeof p.variant === "string" && p.variant ? `${os}/${arch}/${p.variant}` : `${os}/${arch}`;
}

/** The platform Node runs on, in OCI words (x64 → amd64, arm on v7, ...). */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: "amd64",
    ia32: "386",
    arm64: "arm64",
    arm: "arm",
    ppc64: "ppc64le",
    s390x: "s390x",
    riscv64: "riscv64",
  };
  const p: Platform = {
    os: process.platform === "win32" ? "windows" : process.platform,
    architecture: arch[process.arch] ?? process.arch,
  };
  if (process.arch === "arm")
    p.variant = `v${(process.config.variables as { arm_version?: string }).arm_version ?? "7"}`;
  return p;
}

/** Whether an index entry's platform is the one asked for; a variant left out of the request matches any. */
export function platformMatches(
  want: Platform,
  have: { os?: unknown; architecture?: unknown; variant?: unknown } | undefined,
): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false;
  if (want.variant === undefined) return true;
  // arm64 images often leave out "v8"
  const variant =
    typeof have.variant === "string" && have.variant
      ? have.variant
      : want.architecture === "arm64"
        ? "v8"
        : "";
  return variant === want.variant;
}

/** How to choose among an index's children. */
export type PlatformFilter =
  | { kind: "all" }
  | { kind: "platforms"; platforms: Platform[] }
  /** `oc image mirror --filter-by-os`: a regex over `os/arch[/variant]`, anchored. */
  | { kind: "regex"; regex: { test(s: string): boolean } };

export function filterMatches(
  filter: PlatformFilter,
  platform: { os?: unknown; architecture?: unknown; variant?: unknown } | undefined,
): boolean {
  switch (filter.kind) {
    case "all":
      return true;
    case "platforms":
      return filter.platforms.some((w) => platformMatches(w, platform));
    case "regex":
      return platform !== undefined && filter.regex.test(formatPlatform(platform));
  }
}

/** Compiles a `--filter-by-os` pattern the way oc does: the whole platform string must match. */
export function platformRegex(pattern: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`);
  } catch (err) {
    throw new Error(
      `--filter-by-os '${pattern}' is not a valid regular expression: ${(err as Error).message}`,
    );
  }
}
