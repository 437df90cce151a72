import { ConfigError, parseConfig } from "../../src/config/config.ts";

/** Every problem parseConfig finds in `raw`, as "path: message" lines; empty when it is accepted. */
export function configProblems(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}
