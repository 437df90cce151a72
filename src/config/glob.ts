import picomatch from "picomatch";

const matchers = new Map<string, (s: string) => boolean>();

/**
 * Whether a repository name matches a glob of zot's config (`*` within a path segment, `**` across
 * them, dot-names included), compiled once per pattern.
 */
export function globMatch(pattern: string, value: string): boolean {
  let m = matchers.get(pattern);
  if (!m) {
    m = picomatch(pattern, { dot: true });
    matchers.set(pattern, m);
  }
  return m(value);
}
