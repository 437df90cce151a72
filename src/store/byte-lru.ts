/**
 * Content-addressed bytes by digest, bounded by the bytes held, least recently used evicted first.
 * Bytes named by their digest never change, so a hit is always right; whether the content exists
 * where it is asked for is for the caller's metadata lookup to decide. An entry larger than a
 * quarter of the budget is not kept.
 */
export class ByteLru {
  private readonly map = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(key: string): Buffer | undefined {
    const v = this.map.get(key);
    if (v) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: string, value: Buffer): void {
    if (value.length > this.maxBytes / 4 || this.map.has(key)) return;
    this.map.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(k);
      this.bytes -= v.length;
    }
  }
}
