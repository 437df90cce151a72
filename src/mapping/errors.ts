/** A mapping argument or file line that cannot be used; nothing is copied when one is raised. */
export class MappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MappingError";
  }
}

/** Prefixes an error with where the mapping came from (`file F, line N`), oc's wording. */
export function at(origin: string | undefined, err: unknown): MappingError {
  const message = (err as Error)?.message ?? String(err);
  return new MappingError(origin ? `${origin}: ${message}` : message);
}

/** A source that could not be read while expanding a mapping (a run failure, not a bad line). */
export class SourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SourceError";
  }
}
