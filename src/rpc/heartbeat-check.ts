// A HeartbeatRequest checked, whether it came as the Heartbeat RPC or as a
// message on the lease socket (rpc/lease-route.ts): the same rules, the same
// field names in the errors.
import type { HeartbeatRequest } from "../gen/moqworker/v1/coordinator_pb.js";
import { type ActivityNote, checkActivity } from "../model/activity.js";
import { checkSocketAddr, invalid, MAX_ADDRS, MAX_EPOCH_CHARS } from "../model/validate.js";

export interface Beat {
  epoch: string;
  addrs: string[];
  activity?: ActivityNote;
  freshPeers: boolean;
  /** The peer list's version the relay holds (0n: none). */
  peersVersion: bigint;
  /** The relay takes the peer list as changes and pages. */
  peersInParts: boolean;
}

/** `headerEpoch`: the Moq-Relay-Epoch the caller sent, if any; the beat must name the same. */
export function checkBeat(req: HeartbeatRequest, headerEpoch: string | undefined): Beat {
  if (req.epoch === "") throw invalid("epoch", "is required");
  if (req.epoch.length > MAX_EPOCH_CHARS) throw invalid("epoch", `is longer than ${MAX_EPOCH_CHARS} characters`);
  if (req.addrs.length > MAX_ADDRS) throw invalid("addrs", `has more than ${MAX_ADDRS} entries`);
  const addrs = req.addrs.map((a, i) => checkSocketAddr(`addrs[${i}]`, a));
  // One process, one epoch: a header naming another would tag its rows with a life this beat does not keep.
  if (headerEpoch !== undefined && headerEpoch !== req.epoch) {
    throw invalid("epoch", `'${req.epoch}' differs from the Moq-Relay-Epoch header '${headerEpoch}'`);
  }
  return {
    epoch: req.epoch,
    addrs,
    activity: checkActivity(req.activity),
    freshPeers: req.freshPeers,
    peersVersion: req.peersVersion,
    peersInParts: req.peersInParts,
  };
}
