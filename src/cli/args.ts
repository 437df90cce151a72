/** A small flag parser for the copy commands: `--flag value`, `--flag=value`, booleans as `--flag`, `--flag=false`, `--no-flag`. */
export interface FlagSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
}

export type ParsedFlags = Record<string, string | boolean | string[] | undefined>;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function parseFlags(
  argv: string[],
  spec: Record<string, FlagSpec>,
): { flags: ParsedFlags; positionals: string[] } {
  const flags: ParsedFlags = {};
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(spec).flatMap(([k, v]) => (v.short ? [[v.short, k] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let name: string;
    let value: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (eq >= 0) value = arg.slice(eq + 1);
    } else if (arg.startsWith("-") && arg.length > 1) {
      const long = byShort.get(arg.slice(1));
      if (!long) throw new UsageError(`unknown flag '${arg}'`);
      name = long;
    } else {
      positionals.push(arg);
      continue;
    }
    let s = spec[name];
    if (!s && name.startsWith("no-") && spec[name.slice(3)]?.type === "boolean" && value === undefined) {
      flags[name.slice(3)] = false;
      continue;
    }
    if (!s) throw new UsageError(`unknown flag '--${name}'`);
    if (s.type === "boolean") {
      if (value === undefined) flags[name] = true;
      else if (/^(true|1|yes)$/i.test(value)) flags[name] = true;
      else if (/^(false|0|no)$/i.test(value)) flags[name] = false;
      else throw new UsageError(`--${name} takes true or false, not '${value}'`);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    s = s as FlagSpec;
    if (s.multiple) {
      const list = (flags[name] as string[] | undefined) ?? [];
      list.push(value);
      flags[name] = list;
    } else flags[name] = value;
  }
  return { flags, positionals };
}

export function intFlag(flags: ParsedFlags, name: string, fallback: number, min = 0): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer of at least ${min}`);
  return n;
}
