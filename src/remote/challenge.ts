/** One challenge of a `WWW-Authenticate` header: its scheme and its auth-params. */
export interface Challenge {
  /** Lowercased: "basic", "bearer", ... */
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235) into its challenges. Tolerant the way docker is:
 * unquoted values, stray spaces, several challenges separated by commas.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const headers = Array.isArray(header) ? header : [header];
  const out: Challenge[] = [];
  for (const h of headers) out.push(...parseOne(h));
  return out;
}

function parseOne(s: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const n = s.length;
  const skipWs = () => {
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < n && !/[\s,=]/.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  let current: Challenge | undefined;
  while (i < n) {
    skipWs();
    if (s[i] === ",") {
      i++;
      continue;
    }
    const start = i;
    const word = token();
    if (word === "") {
      i++;
      continue;
    }
    skipWs();
    if (s[i] === "=") {
      // an auth-param of the current challenge
      i++;
      skipWs();
      let value: string;
      if (s[i] === '"') {
        i++;
        let v = "";
        while (i < n && s[i] !== '"') {
          if (s[i] === "\\" && i + 1 < n) i++;
          v += s[i];
          i++;
        }
        i++;
        value = v;
      } else {
        const vs = i;
        while (i < n && s[i] !== ",") i++;
        value = s.slice(vs, i).trim();
      }
      if (current) current.params[word.toLowerCase()] = value;
      else i = Math.max(i, start + 1);
    } else {
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}
