// Order-preserving encoding of namespace tuples (the FoundationDB tuple-layer idea).
//
// Each field is written as 0x01, the field's bytes with every 0x00 escaped as
// 0x00 0xFF, then a 0x00 terminator. Byte order of encoded keys equals
// field-by-field order of the tuples (shorter first on ties), and a tuple P is a
// field prefix of N exactly when enc(N) starts with enc(P) and the byte after
// that (if any) is not 0xFF (it is then always 0x01, the start of a field).
// So "keys under P" is the range [enc(P), enc(P) ‖ 0xFF), and "P's prefixes"
// are the encodings of its first k fields: both index-friendly.

const FIELD = 0x01;
const END = 0x00;
const ESCAPE = 0xff;

/** Encodes a tuple. Also returns the encoding of every prefix (0..n fields). */
export function encodeTupleWithPrefixes(fields: readonly Uint8Array[]): {
  key: Uint8Array;
  prefixes: Uint8Array[];
} {
  let size = 0;
  for (const f of fields) {
    size += 2 + f.length;
    for (const b of f) if (b === END) size++;
  }
  const out = new Uint8Array(size);
  const ends: number[] = [0];
  let i = 0;
  for (const f of fields) {
    out[i++] = FIELD;
    for (const b of f) {
      out[i++] = b;
      if (b === END) out[i++] = ESCAPE;
    }
    out[i++] = END;
    ends.push(i);
  }
  return { key: out, prefixes: ends.map((e) => out.subarray(0, e)) };
}

export function encodeTuple(fields: readonly Uint8Array[]): Uint8Array {
  return encodeTupleWithPrefixes(fields).key;
}

/** Inverse of encodeTuple; throws on bytes that no tuple encodes to. */
export function decodeTuple(key: Uint8Array): Uint8Array[] {
  const fields: Uint8Array[] = [];
  let i = 0;
  while (i < key.length) {
    if (key[i] !== FIELD) throw new Error(`bad tuple key: expected field marker at ${i}`);
    i++;
    const field: number[] = [];
    for (;;) {
      if (i >= key.length) throw new Error("bad tuple key: unterminated field");
      const b = key[i++];
      if (b !== END) {
        field.push(b);
      } else if (key[i] === ESCAPE) {
        field.push(END);
        i++;
      } else {
        break;
      }
    }
    fields.push(Uint8Array.from(field));
  }
  return fields;
}

/**
 * Where each field of an encoded tuple ends: the encoding of its first k
 * fields is key[0, ends[k-1]). Lets a holder of the key alone (a Durable
 * Object sent just the key) find its prefixes without decoding it. Throws on
 * bytes that no tuple encodes to.
 */
export function fieldEnds(key: Uint8Array): number[] {
  const ends: number[] = [];
  let i = 0;
  while (i < key.length) {
    if (key[i++] !== FIELD) throw new Error(`bad tuple key: expected field marker at ${i - 1}`);
    for (;;) {
      if (i >= key.length) throw new Error("bad tuple key: unterminated field");
      if (key[i++] !== END) continue;
      if (key[i] !== ESCAPE) break;
      i++;
    }
    ends.push(i);
  }
  return ends;
}

/** Exclusive upper bound of the keys at or under `prefix` (see the header). */
export function prefixUpperBound(prefix: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + 1);
  out.set(prefix);
  out[prefix.length] = ESCAPE;
  return out;
}

/** Copies a view into a standalone ArrayBuffer, the form SQLite bindings take. */
export function toBlob(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer;
}
