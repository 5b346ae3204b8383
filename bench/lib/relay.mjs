// Simulated relays: the coordinator traffic a relay generates besides the
// operations being measured, i.e. keeping its registrations alive.
//
// moq-worker: like the Rust edge (edge/src/coordinator.rs), a relay sends its
// boot epoch on every call, heartbeats first, then every interval_ms the
// Worker returns. One heartbeat keeps all of the relay's rows alive.
//
// moq-api: like moq-relay-ietf 0.7's ApiCoordinator (src/bin/moq-relay-ietf/
// api_coordinator.rs), each registered namespace has its own tokio interval
// that PATCHes the origin every 300 s (the key's TTL in moq-api is 600 s):
// one request per key per TTL/2. (The interval's first tick is immediate, so
// each registration is also followed at once by one PATCH; not counted here.)
import { randomBytes } from "node:crypto";
import { coordinatorCall, relayToken } from "./systems.mjs";

export class WorkerRelay {
  constructor(baseUrl, relayUrl) {
    this.baseUrl = baseUrl;
    this.relayUrl = relayUrl;
    this.epoch = randomBytes(8).toString("hex");
    this.heartbeats = 0;
    this.timer = undefined;
  }

  /** Mints the token and sends the first heartbeat; then beats in the background. */
  async start() {
    this.token = await relayToken(this.baseUrl, this.relayUrl);
    this.auth = { authorization: `Bearer ${this.token}`, "moq-relay-epoch": this.epoch };
    const first = await this.beat();
    this.intervalMs = first.intervalMs;
    this.leaseTtlMs = first.leaseTtlMs;
    const loop = () => {
      this.timer = setTimeout(async () => {
        try {
          await this.beat();
        } catch (e) {
          this.error = e;
        }
        if (this.timer !== undefined) loop();
      }, this.intervalMs);
    };
    loop();
    return this;
  }

  async beat() {
    const { status, json } = await coordinatorCall(this.baseUrl, this.token, "Heartbeat", { epoch: this.epoch, addrs: [] }, this.auth);
    if (status !== 200) throw new Error(`Heartbeat: ${status} ${JSON.stringify(json)}`);
    this.heartbeats++;
    return json;
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.error) throw this.error;
  }
}

/**
 * moq-api's refresh pattern for `keys` registrations, each refreshed every
 * periodMs with its own phase (registrations happen at different times).
 * send(i) performs the refresh of key i; counts what was sent.
 */
export class MoqApiRefresher {
  constructor({ keys, periodMs, send }) {
    this.keys = keys;
    this.periodMs = periodMs;
    this.send = send;
    this.requests = 0;
    this.failures = 0;
    this.timers = [];
  }

  start() {
    for (let i = 0; i < this.keys; i++) {
      // Key i was registered at a uniformly spread time in the last period.
      const phase = ((i + 0.5) / this.keys) * this.periodMs;
      const tick = () => {
        this.requests++;
        this.send(i).then(
          (ok) => ok || this.failures++,
          () => this.failures++,
        );
      };
      const first = setTimeout(() => {
        tick();
        this.timers.push(setInterval(tick, this.periodMs));
      }, phase);
      this.timers.push(first);
    }
    return this;
  }

  stop() {
    for (const t of this.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
  }
}

/**
 * Several relays on one moq-worker. Request i of an operation is sent by
 * relay i mod n, so registrations spread over relays as in a real network
 * (and stay under the Worker's per-relay quotas, MAX_NAMESPACES_PER_RELAY).
 */
export class RelayPool {
  constructor(baseUrl, prefix, n) {
    this.relays = Array.from({ length: n }, (_, k) => new WorkerRelay(baseUrl, `https://${prefix}-${k}.bench.test/`));
  }

  async start() {
    for (const r of this.relays) await r.start();
    this.auths = this.relays.map((r) => r.auth);
    return this;
  }

  /** Headers of the relay that sends request i. */
  auth = (i) => this.auths[i % this.auths.length];
  relayOf = (i) => this.relays[i % this.relays.length];

  get heartbeats() {
    return this.relays.reduce((a, r) => a + r.heartbeats, 0);
  }

  stop() {
    for (const r of this.relays) r.stop();
  }
}
