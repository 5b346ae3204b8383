#!/usr/bin/env python3
"""Renders the scale curve of a bench results JSON to a PNG.

    python3 bench/plot.py [bench/results/latest.json] [bench/results/scale.png]

Left: Lookup latency in one scope against registered namespaces. Middle:
LookupNamespaceSubscribers latency against subscribed prefixes. Right:
throughput of each operation, moq-worker setups next to moq-api + Redis.
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
