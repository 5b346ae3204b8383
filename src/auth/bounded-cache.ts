// Per-isolate caches of verified credentials: a Map that forgets its oldest
// entry (Maps iterate in insertion order) once it holds more than `max`.

/** Stores `value` under `key`; drops the oldest entry when the map exceeds `max`. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.set(key, value);
  if (map.size <= max) return;
  for (const oldest of map.keys()) {
    map.delete(oldest);
    return;
  }
}
