import { RE2JS } from "re2js";

/**
 * Regular expressions as zot reads them: Go's `regexp` package, which is RE2. JavaScript's RegExp
 * would read the same config differently (`(?i)`, `\z`, `\Q…\E` and `[[:digit:]]` are errors or
 * mean something else there, while backreferences and lookaround, which Go refuses, are accepted),
 * so a zot config would filter other tags than it does under zot. re2js is a port of RE2 with
 * Go's syntax; its opt-in lookbehind extension stays off, so what Go refuses is refused here too.
 */
export interface GoRegexp {
  readonly source: string;
  /** Go's `MatchString`: true when the expression matches anywhere in `s` (unanchored). */
  test(s: string): boolean;
}

export class GoRegexpError extends Error {
  constructor(
    readonly source: string,
    readonly reason: string,
  ) {
    super(`'${source}' is not a Go (RE2) regular expression: ${reason}`);
    this.name = "GoRegexpError";
  }
}

const compiled = new Map<string, GoRegexp>();

export function compileGoRegexp(source: string): GoRegexp {
  let re = compiled.get(source);
  if (re) return re;
  let program: RE2JS;
  try {
    program = RE2JS.compile(source);
  } catch (err) {
    throw new GoRegexpError(source, (err as Error).message.replace(/^error parsing regexp: /, ""));
  }
  re = { source, test: (s) => program.matcher(s).find() };
  // Configs name a handful of expressions; the cache only spares recompiling them per tag.
  if (compiled.size < 1000) compiled.set(source, re);
  return re;
}

/** Why `source` is not a Go regular expression, or undefined when it is one. */
export function goRegexpProblem(source: string): string | undefined {
  try {
    compileGoRegexp(source);
    return undefined;
  } catch (err) {
    if (err instanceof GoRegexpError) return err.reason;
    throw err;
  }
}
