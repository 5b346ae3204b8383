// Binary protobuf for the two calls relays make most, written by hand:
// LookupRequest/Response (every SUBSCRIBE a relay cannot serve locally) and
// RegisterNamespaceRequest/Response (every PUBLISH_NAMESPACE). The pipeline
// (rpc/router.ts) uses these for binary calls of those two methods instead of
// protobuf-es's reflection-driven fromBinary/toBinary and connect-es's
// invocation. Why it is worth a hand-written codec is measured in
// docs/performance.md "Fast path".
//
// The bytes are exactly protobuf-es's: test/fast-wire.test.ts checks both
// directions against fromBinary/toBinary on generated messages, and the
// coordinator tests call these methods through connect-es's own client in
// binary (this path) and JSON (the general one). Like fromBinary, unknown
// fields are skipped, a repeated message field merges, and strings must be
// valid UTF-8 (proto3). Stricter than it on two kinds of malformed bytes,
// which it reads as something the sender did not write: a known field with
// the wrong wire type, and a field that runs past the end of the message
// holding it (fromBinary reads on into the outer message). Both are refused.
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { Context, Namespace, RelayInfo } from "../gen/moqworker/v1/coordinator_pb.js";

/** The fields of a LookupRequest or RegisterNamespaceRequest the handlers read ($typeName aside). */
export interface ScopedNamespaceRequest {
  scope?: string;
  namespace?: Pick<Namespace, "fields">;
  context?: Pick<Context, "interface" | "sourceUrl" | "sourceAddr">;
}

/** A LookupResponse's one field, as plain data. */
export interface OriginAnswer {
  namespace: Pick<Namespace, "fields">;
  relay: Pick<RelayInfo, "url" | "addr">;
}

const LEN = WireType.LengthDelimited;

function expectLen(no: number, wt: WireType): void {
  if (wt !== LEN) throw new Error(`field ${no}: wire type ${wt}, expected ${LEN} (length-delimited)`);
}

/** The end of the length-delimited message that starts at the reader's position. */
function messageEnd(r: BinaryReader): number {
  const end = r.uint32() + r.pos;
  if (end > r.len) throw new RangeError("premature EOF");
  return end;
}

function ended(r: BinaryReader, end: number): void {
  if (r.pos !== end) throw new Error("a field runs past the end of its message");
}

function readNamespace(r: BinaryReader, into: Pick<Namespace, "fields">): void {
  const end = messageEnd(r);
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (no === 1) {
      expectLen(no, wt);
      into.fields.push(r.bytes());
    } else r.skip(wt, no);
  }
  ended(r, end);
}

function readContext(r: BinaryReader, into: NonNullable<ScopedNamespaceRequest["context"]>): void {
  const end = messageEnd(r);
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (no === 1) {
      if (wt !== WireType.Varint) throw new Error(`field ${no}: wire type ${wt}, expected ${WireType.Varint} (varint)`);
      into.interface = r.int32();
    } else if (no === 2 || no === 3) {
      expectLen(no, wt);
      const value = r.string(true);
      if (no === 2) into.sourceUrl = value;
      else into.sourceAddr = value;
    } else r.skip(wt, no);
  }
  ended(r, end);
}

/**
 * A LookupRequest (scope = 1, namespace = 2) or RegisterNamespaceRequest (the
 * same plus context = 3): both number their fields alike. Throws on bytes
 * that are not one.
 */
export function readScopedNamespaceRequest(bytes: Uint8Array, withContext: boolean): ScopedNamespaceRequest {
  const r = new BinaryReader(bytes);
  const out: ScopedNamespaceRequest = {};
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) {
      expectLen(no, wt);
      out.scope = r.string(true);
    } else if (no === 2) {
      expectLen(no, wt);
      out.namespace ??= { fields: [] };
      readNamespace(r, out.namespace);
    } else if (no === 3 && withContext) {
      expectLen(no, wt);
      // The enum's default, as create() would leave it.
      out.context ??= { interface: 0 };
      readContext(r, out.context);
    } else r.skip(wt, no);
  }
  return out;
}

/** LookupResponse { origin = 1: NamespaceOrigin { namespace = 1, relay = 2 } }. */
export function writeLookupResponse(origin: OriginAnswer): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, LEN).fork();
  w.tag(1, LEN).fork();
  for (const f of origin.namespace.fields) w.tag(1, LEN).bytes(f);
  w.join();
  w.tag(2, LEN).fork();
  // url has implicit presence (proto3: written unless empty); addr is optional (written when set).
  if (origin.relay.url !== "") w.tag(1, LEN).string(origin.relay.url);
  if (origin.relay.addr !== undefined) w.tag(2, LEN).string(origin.relay.addr);
  w.join();
  w.join();
  return w.finish();
}

/** RegisterNamespaceResponse { registration_id = 1 }. */
export function writeRegisterNamespaceResponse(answer: { registrationId: string }): Uint8Array {
  const w = new BinaryWriter();
  if (answer.registrationId !== "") w.tag(1, LEN).string(answer.registrationId);
  return w.finish();
}
