// A lease-socket client for the benchmarks and the soak (coordinator.proto,
// "The lease socket"), behaving as the edge does (edge/src/lease_socket.rs):
// GET /v1/lease with the relay's token and epoch, a HeartbeatRequest first and
// then every `beatMs`, "ping" every second, answered by the runtime.
import { registerTypeScriptHooks } from "../../../bin/ts-hooks.mjs";

registerTypeScriptHooks();
const { create, fromBinary, toBinary } = await import("@bufbuild/protobuf");
const { HeartbeatRequestSchema, HeartbeatResponseSchema } = await import("../../../src/gen/moqworker/v1/coordinator_pb.ts");

/**
 * Opens the socket and resolves once its first HeartbeatRequest is answered
 * with { reply, sentAt, at, connectAt, pings(), beat(), close() }; rejects if
 * it closes or fails before, with the end's fields and `beatSent` (when the
 * first HeartbeatRequest went out, if it did). Later:
 * - `beat()` sends a HeartbeatRequest now and resolves with { reply, sentAt, at, heardFrom }
 *   (`heardFrom`: the Worker had heard the relay on this socket no earlier than
 *   that, the last ping sent before it or the connect), or undefined if the
 *   socket ended first; `beatMs` 0 sends none on a timer;
 * - `onPong(sentAt, at)` hears each pong, with when its ping was sent;
 * - with `pongWithinMs`, a ping or beat unanswered that long gives the socket
 *   up (closed by the relay, as the edge's PONG_WITHIN);
 * - `onClose({ code, reason, at, byRelay })` hears the end once: `byRelay` when
 *   this side gave it up (close() or no answer in time; `at` is then when it
 *   did, the Worker hearing of it no sooner).
 */
export function openLeaseSocket(baseUrl, token, epoch, { addrs = [], beatMs = 30_000, pingMs = 1000, pongWithinMs, onClose, onPong } = {}) {
  const url = new URL("/v1/lease", baseUrl.replace(/^http/, "ws"));
  const connectAt = Date.now();
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}`, "moq-relay-epoch": epoch } });
  ws.binaryType = "arraybuffer";
  let pings = 0;
  let up = false;
  let ended;
  let lastPingAt = connectAt;
  let firstSentAt;
  let answerBy;
  const timers = [];
  /** Sent and not yet answered, in order (the Worker answers in order). */
  const beats = [];
  const pingsSent = [];
  const expectAnswer = () => {
    if (pongWithinMs && answerBy === undefined) answerBy = Date.now() + pongWithinMs;
  };
  const beat = () => {
    if (ended || ws.readyState !== WebSocket.OPEN) return Promise.resolve(undefined);
    const sentAt = Date.now();
    firstSentAt ??= sentAt;
    ws.send(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { epoch, addrs })));
    expectAnswer();
    return new Promise((resolve) => beats.push({ sentAt, heardFrom: lastPingAt, resolve }));
  };
  return new Promise((resolve, reject) => {
    const end = (e) => {
      if (ended) return;
      ended = e;
      for (const t of timers) clearInterval(t);
      for (const b of beats.splice(0)) b.resolve(undefined);
      // After the first answer an end is news for the holder; before it, a refusal.
      if (up) onClose?.(e);
      else
        reject(Object.assign(new Error(`lease socket ${url}: closed ${e.code} ${e.reason}`), { ...e, connectAt, beatSent: firstSentAt }));
    };
    const close = (code, reason) => {
      try {
        ws.close(code, reason);
      } catch {}
      end({ code, reason, at: Date.now(), byRelay: true });
    };
    // The upgrade and the first answer too (a frozen Worker accepts the connection and answers nothing).
    if (pongWithinMs) timers.push(setTimeout(() => up || close(1000, "no answer in time"), pongWithinMs));
    ws.addEventListener("error", () => {
      if (!up) end({ code: 1006, reason: "error", at: Date.now(), byRelay: false });
    });
    ws.addEventListener("close", (e) => end({ code: e.code, reason: e.reason, at: Date.now(), byRelay: false }));
    ws.addEventListener("open", () => {
      beat().then((first) => {
        if (!first) return;
        up = true;
        timers.push(
          setInterval(() => {
            if (ws.readyState !== WebSocket.OPEN) return;
            lastPingAt = Date.now();
            ws.send("ping");
            pingsSent.push(lastPingAt);
            expectAnswer();
            pings++;
          }, pingMs),
        );
        if (beatMs > 0) timers.push(setInterval(beat, beatMs));
        if (pongWithinMs)
          timers.push(
            setInterval(() => {
              if (answerBy !== undefined && Date.now() > answerBy) close(1000, "no answer in time");
            }, 100),
          );
        resolve({ ...first, connectAt, pings: () => pings, beat, close: () => close(1000, "the relay closed its lease socket") });
      });
    });
    ws.addEventListener("message", (m) => {
      const at = Date.now();
      answerBy = undefined;
      if (typeof m.data === "string") {
        const sentAt = pingsSent.shift();
        if (m.data === "pong" && sentAt !== undefined) onPong?.(sentAt, at);
        return;
      }
      const b = beats.shift();
      b?.resolve({ reply: fromBinary(HeartbeatResponseSchema, new Uint8Array(m.data)), sentAt: b.sentAt, at, heardFrom: b.heardFrom });
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
