// The watch channel's frames (schema/moqworker/v1/watch.proto), made once by
// the scope's root and sent as they are by every branch.
import { create, toBinary } from "@bufbuild/protobuf";
import { NamespaceSchema, TrackEntrySchema } from "../gen/moqworker/v1/coordinator_pb.js";
import { WatchEventSchema, WatchHelloSchema, WatchInvalidateSchema } from "../gen/moqworker/v1/watch_pb.js";

/** What a change may have altered; see WatchInvalidate in watch.proto. */
export interface Invalidation {
  namespaces?: Uint8Array[][];
  tracks?: { fields: Uint8Array[]; name: string }[];
  config?: boolean;
  paths?: string[];
  all?: boolean;
}

export function helloFrame(stream: string, seq: number): Uint8Array {
  return toBinary(
    WatchEventSchema,
    create(WatchEventSchema, { seq: BigInt(seq), event: { case: "hello", value: create(WatchHelloSchema, { stream }) } }),
  );
}

export function invalidateFrame(seq: number, what: Invalidation): Uint8Array {
  const value = create(WatchInvalidateSchema, {
    namespaces: (what.namespaces ?? []).map((fields) => create(NamespaceSchema, { fields })),
    tracks: (what.tracks ?? []).map((t) =>
      create(TrackEntrySchema, { namespace: create(NamespaceSchema, { fields: t.fields }), name: t.name }),
    ),
    config: what.config ?? false,
    paths: what.paths ?? [],
    all: what.all ?? false,
  });
  return toBinary(WatchEventSchema, create(WatchEventSchema, { seq: BigInt(seq), event: { case: "invalidate", value } }));
}
