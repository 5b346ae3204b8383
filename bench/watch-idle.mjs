// Why the watch channel uses WebSocket hibernation with a runtime
// auto-response for pings (docs/performance.md "Watch channel"): N idle watch
// sockets on one scope, each pinging once a second, on bare workerd. Measured:
// workerd's CPU (user+system, all threads) and RSS over the window, for the
// Worker as built (pings answered by the runtime, the object never woken) and
// for the same source with only the auto-response removed (each ping wakes
// the object and runs its webSocketMessage handler, which answers "pong").
//
//   npx node bench/watch-idle.mjs [--sockets 1000] [--seconds 20] [--ref HEAD]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openWatch } from "../test/e2e/lib/watch.mjs";
import { buildBundle, cpuMs, relayToken, rssMiB, sourceTree, startWorkerd } from "./lib/systems.mjs";

const { values: o } = parseArgs({
  options: {
    sockets: { type: "string", default: "1000" },
    seconds: { type: "string", default: "20" },
    ref: { type: "string", default: "HEAD" },
  },
});
const SOCKETS = Number(o.sockets);
const SECONDS = Number(o.seconds);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const AUTO_RESPONSE = 'ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));';

async function measure(label, root) {
  const bundle = buildBundle(root);
  const w = await startWorkerd({ bundle });
  try {
    const token = await relayToken(w.url, "https://idle.bench.example/");
    const scope = "idle";
    const sockets = [];
    for (let i = 0; i < SOCKETS; i += 50) {
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, SOCKETS - i) }, () => openWatch(w.url, token, scope)))));
    }
    for (const s of sockets) await s.next();
    let pongs = 0;
    for (const s of sockets) {
      s.ws.addEventListener("message", (m) => {
        if (m.data === "pong") pongs++;
      });
    }
    // Pings spread over the second, as independent relays' timers would be.
    const timers = sockets.map((s, i) =>
      setTimeout(
        () => {
          s.ws.send("ping");
          timers[i] = setInterval(() => s.ws.send("ping"), 1000);
        },
        (i * 1000) / SOCKETS,
      ),
    );
    await sleep(3000); // settle
    const cpu0 = cpuMs(w.pids());
    const pongs0 = pongs;
    const rssSamples = [];
    for (let t = 0; t < SECONDS; t++) {
      await sleep(1000);
      rssSamples.push(rssMiB(w.pids()));
    }
    const cpu = cpuMs(w.pids()) - cpu0;
    const answered = pongs - pongs0;
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.close();
    const row = {
      variant: label,
      sockets: SOCKETS,
      seconds: SECONDS,
      pingsAnswered: answered,
      workerdCpuMsPerSecond: +(cpu / SECONDS).toFixed(1),
      workerdCpuUsPerPing: +((cpu * 1000) / Math.max(1, answered)).toFixed(1),
      workerdRssMiB: Math.max(...rssSamples),
    };
    console.error(JSON.stringify(row));
    return row;
  } finally {
    await w.stop();
    bundle.remove();
  }
}

const asBuilt = sourceTree(o.ref);
const woken = sourceTree(o.ref);
try {
  // The object holding the sockets: the scope's object before the watch branches (src/watch/hub.ts), a branch since.
  const holder = ["src/watch/branch.ts", "src/watch/hub.ts"].map((f) => join(woken.root, f)).find((f) => existsSync(f));
  const src = holder ? readFileSync(holder, "utf8") : "";
  if (!src.includes(AUTO_RESPONSE))
    throw new Error(`the watch sockets' object of ${o.ref} no longer sets the auto-response this script removes`);
  writeFileSync(holder, src.replace(AUTO_RESPONSE, ""));
  const rows = [await measure("auto-response (as built)", asBuilt.root), await measure("object woken per ping", woken.root)];
  console.log(JSON.stringify({ ref: asBuilt.commit.slice(0, 7), rows }, null, 2));
} finally {
  asBuilt.remove();
  woken.remove();
}
