#!/usr/bin/env node
// What a change to the peer list costs each relay on the wire (issue 27,
// docs/lifetimes.md "Peers"), side by side: an edge that takes the whole list
// (no peers_in_parts, the baseline) and one that takes it in parts. N relays
// beat once; relay A and relay W (whole) take the list; then one relay joins
// and one leaves, and each takes the next answer. Binary protobuf, as the
// edge sends it, against the built bundle on bare workerd.
// Usage: npx node bench/peer-list-bytes.mjs [--relays 2000]
import { parseArgs } from "node:util";
import { registerTypeScriptHooks } from "../bin/ts-hooks.mjs";
import { buildBundle, relayToken, startWorkerd } from "./lib/systems.mjs";

registerTypeScriptHooks();
const { create, fromBinary, toBinary } = await import("@bufbuild/protobuf");
const pb = await import("../src/gen/moqworker/v1/coordinator_pb.ts");

const { values } = parseArgs({ options: { relays: { type: "string", default: "2000" } } });
const N = Number(values.relays);

/** A CoordinatorService call in binary protobuf: the answer and its size in bytes. */
async function call(base, token, method, reqSchema, resSchema, body) {
  const res = await fetch(`${base}/moqworker.v1.CoordinatorService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/proto", authorization: `Bearer ${token}`, "moq-relay-epoch": "e1" },
    body: toBinary(reqSchema, create(reqSchema, body)),
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (!res.ok) throw new Error(`${method}: ${res.status} ${new TextDecoder().decode(bytes)}`);
  return { reply: fromBinary(resSchema, bytes), bytes: bytes.length };
}

const beat = (base, token, body) =>
  call(base, token, "Heartbeat", pb.HeartbeatRequestSchema, pb.HeartbeatResponseSchema, { epoch: "e1", ...body });

/** Takes the list in parts from version `held`: answer bytes (pages included), pages read and the new version. */
async function inParts(base, token, held) {
  const first = await beat(base, token, { freshPeers: true, peersVersion: held, peersInParts: true });
  let bytes = first.bytes;
  let pages = 0;
  let after = first.reply.peers.at(-1)?.url ?? "";
  for (let more = first.reply.peersMore; more; pages++) {
    const page = await call(base, token, "ListPeers", pb.ListPeersRequestSchema, pb.ListPeersResponseSchema, {
      peersVersion: first.reply.peersVersion,
      after,
    });
    bytes += page.bytes;
    after = page.reply.peers.at(-1)?.url ?? after;
    more = page.reply.more;
  }
  const kind = first.reply.peersDelta ? "delta" : first.reply.peersUnchanged ? "unchanged" : "list";
  return { bytes, pages, kind, version: first.reply.peersVersion };
}

const bundle = buildBundle();
// Relays beat once here: a lease of an hour keeps them all live for the run.
const w = await startWorkerd({ bundle, vars: { LEASE_TTL_MS: "3600000" } });
try {
  const urls = Array.from({ length: N }, (_, i) => `https://peer-${String(i).padStart(5, "0")}.relay.example:4443/`);
  const tokens = [];
  for (let i = 0; i < N; i += 32) {
    const batch = urls.slice(i, i + 32);
    const made = await Promise.all(batch.map((u) => relayToken(w.url, u)));
    await Promise.all(made.map((t, j) => beat(w.url, t, { addrs: [`10.0.${(i + j) >> 8}.${(i + j) & 255}:4443`] })));
    tokens.push(...made);
  }
  const [a, whole] = [tokens[0], tokens[1]];
  const start = await inParts(w.url, a, 0n);
  const wholeStart = await beat(w.url, whole, { freshPeers: true });
  console.log(
    `${N} relays: a relay starting takes ${start.bytes.toLocaleString("en-US")} bytes in parts (${start.pages} ListPeers pages) against ${wholeStart.bytes.toLocaleString("en-US")} whole`,
  );

  let held = start.version;
  let wholeHeld = wholeStart.reply.peersVersion;
  const rows = [];
  for (const [what, change] of [
    [
      "one relay joins",
      async () => beat(w.url, await relayToken(w.url, "https://peer-joined.relay.example:4443/"), { addrs: ["10.9.9.9:4443"] }),
    ],
    ["one relay leaves", () => call(w.url, tokens[2], "Shutdown", pb.ShutdownRequestSchema, pb.ShutdownResponseSchema, {})],
  ]) {
    await change();
    const parts = await inParts(w.url, a, held);
    const full = await beat(w.url, whole, { freshPeers: true, peersVersion: wholeHeld });
    held = parts.version;
    wholeHeld = full.reply.peersVersion;
    rows.push({ what, wholeBytes: full.bytes, partsBytes: parts.bytes, partsKind: parts.kind });
    console.log(
      `${what}: each relay's next answer: whole list ${full.bytes.toLocaleString("en-US")} bytes, in parts ${parts.bytes} bytes (${parts.kind})`,
    );
  }
  const perPeer = wholeStart.bytes / (N - 1);
  console.log(
    `at 10,000 relays, by the whole list's ${perPeer.toFixed(1)} bytes a peer: ${Math.round(perPeer * 9_999).toLocaleString("en-US")} bytes a change for each relay taking it whole (extrapolated); in parts the change alone`,
  );
  console.log(
    JSON.stringify({ relays: N, startBytes: { parts: start.bytes, pages: start.pages, whole: wholeStart.bytes }, changes: rows }),
  );
} finally {
  await w.stop();
  bundle.remove();
}
