import { execFileSync } from "node:child_process";

/**
 * Whether an external tool (skopeo, podman, docker-registry, ...) is on PATH.
 * In CI a missing tool is a failure, never a skip: CI installs everything the tests need.
 */
export function hasTool(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    if (process.env.CI === "true") {
      throw new Error(`required tool '${name}' is not installed (CI must install it in .ci/run)`);
    }
    return false;
  }
}

/**
 * A launcher prefix that runs a command in a private mount namespace after `mountScript` (sh, with
 * `$0` the directory) prepared `dir`: what the test does to the mount stays inside the command.
 */
export function privateMount(mountScript: string, dir: string): string[] {
  return ["unshare", "--mount", "--propagation", "private", "sh", "-c", `${mountScript} && exec "$@"`, dir];
}
