// A small stable hash for spreading names over a fixed number of objects.

/** FNV-1a (32 bits) of a string's UTF-16 code units: the same everywhere, every deploy. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Which of `count` buckets a name falls in. */
export function bucketOf(name: string, count: number): number {
  return fnv1a(name) % count;
}
