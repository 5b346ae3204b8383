#!/usr/bin/env python3
"""Renders the scale curve of a bench results JSON to a PNG.

    python3 bench/plot.py [bench/results/latest.json] [bench/results/scale.png]

Left: Lookup latency in one scope against registered namespaces. Middle:
LookupNamespaceSubscribers latency against subscribed prefixes. Right:
throughput of each operation, moq-worker setups next to moq-api + Redis.
When the results hold `relaySeen`, also relay-seen.png beside it: the lookup
as the relay makes it (the edge's cached WorkerCoordinator against
moq-relay-ietf's ApiCoordinator on moq-api + Redis), how fast a moved
namespace reaches another relay's cache, and Worker calls per 1,000 joins.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402


def plain(ax):
    """Plain numbers on a log y axis: 1, 2, 5 steps, no minor labels."""
    f = ScalarFormatter()
    f.set_scientific(False)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(f)
    ax.yaxis.set_minor_formatter(NullFormatter())

here = Path(__file__).resolve().parent
src = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "results" / "latest.json"
dst = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "results" / "scale.png"
r = json.loads(src.read_text())
s = r["scale"]
c = s["concurrency"]

fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=90)

ax = axes[0]
n = [x["namespaces"] for x in s["lookup"]]
ax.plot(n, [x["hit"]["p50Ms"] for x in s["lookup"]], "o-", color="tab:blue", label=f"hit p50 @{c}")
ax.plot(n, [x["hit"]["p99Ms"] for x in s["lookup"]], "o--", color="tab:blue", alpha=0.6, label=f"hit p99 @{c}")
ax.plot(n, [x["miss"]["p50Ms"] for x in s["lookup"]], "s-", color="tab:orange", label=f"miss p50 @{c}")
if "hitUnloaded" in s["lookup"][0]:
    ax.plot(n, [x["hitUnloaded"]["p50Ms"] for x in s["lookup"]], "^-", color="tab:green", label="hit p50 @1")
    ax.plot(n, [x["hitUnloaded"]["p99Ms"] for x in s["lookup"]], "^--", color="tab:green", alpha=0.6, label="hit p99 @1")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("registered namespaces in the scope")
ax.set_ylabel("latency (ms)")
ax.set_title("Lookup vs namespaces (one scope)")
plain(ax)
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=7, loc="center", ncol=2)

ax = axes[1]
p = [x["prefixes"] for x in s["subscribers"]]
ax.plot(p, [x["result"]["p50Ms"] for x in s["subscribers"]], "o-", color="tab:purple", label=f"p50 @{c}")
ax.plot(p, [x["result"]["p99Ms"] for x in s["subscribers"]], "o--", color="tab:purple", alpha=0.6, label=f"p99 @{c}")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("subscribed prefixes in the scope")
ax.set_ylabel("latency (ms)")
lo = min(x["result"]["p50Ms"] for x in s["subscribers"])
hi = max(x["result"]["p99Ms"] for x in s["subscribers"])
ax.set_ylim(lo * 0.5, hi * 1.5)
ax.set_title("LookupNamespaceSubscribers vs prefixes")
plain(ax)
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)

ax = axes[2]
rows = [x for x in r["headline"]["rows"] if x["concurrency"] == r["headline"]["concurrency"]]
ops = ["register", "lookup-hit", "lookup-miss"]
systems = []
for x in rows:
    if x["system"] not in systems and any(y["system"] == x["system"] and y["op"] in ops for y in rows):
        systems.append(x["system"])
width = 0.8 / max(1, len(systems))
for i, name in enumerate(systems):
    vals = []
    for op in ops:
        m = [x for x in rows if x["system"] == name and x["op"] == op]
        vals.append(m[0]["rps"] if m else 0)
    label = "moq-worker (Miniflare)" if name == "moq-worker" else "moq-api + Redis" if name == "moq-api" else name
    ax.bar([k + i * width for k in range(len(ops))], vals, width, label=label)
ax.set_xticks([k + width * (len(systems) - 1) / 2 for k in range(len(ops))])
ax.set_xticklabels(ops)
ax.set_yscale("log")
ax.set_ylabel("requests/s (log)")
ax.set_title(f"Throughput @{c} connections")
plain(ax)
ax.grid(True, axis="y", which="both", alpha=0.3)
ax.legend(fontsize=7)

m = r["machine"]
fig.suptitle(
    f"moq-worker bench ({r['mode']}, {r['startedAt'][:10]}): {m['cpus']} × {m['cpuModel']}, load avg at start {m['loadavg'][0]}; "
    "load generator and servers on the same machine",
    fontsize=9,
)
fig.tight_layout()
fig.savefig(dst)
print(dst)


def relay_seen(rs, started, out):
    """The relaySeen figures: throughput and latency side by side, propagation, joins."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), dpi=90)
    names = ["cached WorkerCoordinator\n(moq-worker edge)", "ApiCoordinator\n(moq-api + Redis)"]
    colors = ["tab:blue", "tab:gray"]
    rows = rs["rows"]

    ax = axes[0]
    ax.bar(names, [x["opsPerSec"] for x in rows], color=colors)
    ax.set_yscale("log")
    ax.set_ylim(1000, max(x["opsPerSec"] for x in rows) * 2)
    ax.set_ylabel("lookup_track calls/s (log)")
    ax.set_title(f"Relay-seen lookup throughput: {rs['ratio']:.1f}×")
    plain(ax)
    ax.grid(True, axis="y", which="both", alpha=0.3)

    ax = axes[1]
    width = 0.38
    for i, (x, color) in enumerate(zip(rows, colors)):
        ax.bar([k + i * width for k in range(2)], [x["p50Ms"], x["p99Ms"]], width, color=color, label=names[i].replace("\n", " "))
    ax.set_xticks([k + width / 2 for k in range(2)])
    ax.set_xticklabels(["p50", "p99"])
    ax.set_yscale("log")
    ax.set_ylabel("latency per call (ms, log)")
    ax.set_title(f"Relay-seen lookup latency: p50 {rs['p50Ratio']:.3f}×")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes[2]
    p = rs["propagation"]
    j = rs["joins"]
    bars = ax.bar(["propagation p50", "propagation p99", "goal p99"], [p["p50Ms"], p["p99Ms"], 50], color=["tab:green", "tab:green", "tab:red"])
    bars[2].set_alpha(0.35)
    ax.set_ylabel("ms until B's cache answers the new host")
    ax.set_title(f"Moved namespace reaching another relay's cache ({p['trials']} trials)\n{j['per1000']} Worker calls per 1,000 viewer joins (goal ≤ 10)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)

    # A --relay-seen-only run stamps its own time; a full run's is the run's.
    when = rs.get("measuredAt", started)[:10]
    fig.suptitle(f"relay-seen routing ({when}): {rs['method'][:150]}…", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    print(out)


if "relaySeen" in r and "rows" in r["relaySeen"]:
    relay_seen(r["relaySeen"], r["startedAt"], dst.with_name("relay-seen.png"))
