// A lease-socket client for the benchmarks (coordinator.proto, "The lease
// socket"), behaving as the edge does (edge/src/lease_socket.rs): GET
// /v1/lease with the relay's token and epoch, a HeartbeatRequest first and
// then every `beatMs`, "ping" every second, answered by the runtime.
import { registerTypeScriptHooks } from "../../../bin/ts-hooks.mjs";

registerTypeScriptHooks();
const { create, fromBinary, toBinary } = await import("@bufbuild/protobuf");
const { HeartbeatRequestSchema, HeartbeatResponseSchema } = await import("../../../src/gen/moqworker/v1/coordinator_pb.ts");

/** Opens the socket and resolves with { reply (the first HeartbeatResponse), pings(), close() } once answered; `onClose` hears a later close. */
export function openLeaseSocket(baseUrl, token, epoch, { addrs = [], beatMs = 30_000, pingMs = 1000, onClose } = {}) {
  const url = new URL("/v1/lease", baseUrl.replace(/^http/, "ws"));
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}`, "moq-relay-epoch": epoch } });
  ws.binaryType = "arraybuffer";
  const beat = () => ws.send(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { epoch, addrs })));
  let pings = 0;
  const timers = [];
  return new Promise((resolve, reject) => {
    ws.addEventListener("error", () => reject(new Error(`lease socket ${url}: error`)));
    ws.addEventListener("close", (e) => {
      for (const t of timers) clearInterval(t);
      // After the first answer a close is news for the holder; before it, a refusal.
      if (timers.length > 0) onClose?.(e);
      else reject(new Error(`lease socket ${url}: closed ${e.code} ${e.reason}`));
    });
    ws.addEventListener("open", beat);
    ws.addEventListener("message", (m) => {
      if (typeof m.data === "string" || timers.length > 0) return;
      const reply = fromBinary(HeartbeatResponseSchema, new Uint8Array(m.data));
      timers.push(
        setInterval(() => {
          ws.send("ping");
          pings++;
        }, pingMs),
        setInterval(beat, beatMs),
      );
      resolve({
        reply,
        pings: () => pings,
        close: () => {
          for (const t of timers) clearInterval(t);
          ws.close(1000);
        },
      });
    });
  });
}

/**
 * A relay's lease kept on the socket across closes, as the edge keeps it: a
 * lost socket is opened again after a jitter of up to `reconnectMs`, retried
 * with the same jitter while the Worker is unreachable. `opens` counts the
 * sockets that were answered; `openedAt` is when the last one was.
 */
export class LeaseHolder {
  constructor(baseUrl, token, epoch, { reconnectMs = 500 } = {}) {
    Object.assign(this, { baseUrl, token, epoch, reconnectMs, opens: 0, openedAt: 0, stopped: false, lease: undefined });
  }

  async start() {
    await this.open();
    return this;
  }

  async open() {
    while (!this.stopped) {
      try {
        this.lease = await openLeaseSocket(this.baseUrl, this.token, this.epoch, {
          onClose: () => {
            if (!this.stopped) setTimeout(() => this.open(), Math.random() * this.reconnectMs);
          },
        });
        this.opens++;
        this.openedAt = performance.now();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, Math.random() * this.reconnectMs));
      }
    }
  }

  stop() {
    this.stopped = true;
    this.lease?.close();
  }
}
