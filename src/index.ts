// The moq-worker Worker: HTTP routing and the Durable Object classes.
import { Hono } from "hono";
import { ConnectError } from "@connectrpc/connect";
import type { Env } from "./env.js";
import { requireAdmin } from "./auth/bearer.js";
import { enforceRateLimit } from "./auth/rate-limit.js";
import { AdminService } from "./gen/moqworker/v1/admin_pb.js";
import { CoordinatorService } from "./gen/moqworker/v1/coordinator_pb.js";
import { adminService } from "./rpc/admin.js";
import { adminCaller, relayCaller } from "./rpc/callers.js";
import { coordinatorFastPath, coordinatorService } from "./rpc/coordinator.js";
import { connectErrorResponse, rpcService, serveRpc } from "./rpc/router.js";
import { rpcMetrics } from "./metrics/registry.js";
import { billing } from "./metrics/billing.js";
import { dashboardResponse } from "./dashboard/serve.js";
import { watchRoute } from "./watch/route.js";
import { leaseRoute } from "./rpc/lease-route.js";
import { reportSettingProblems } from "./settings.js";

export { ScopeObject } from "./objects/scope.js";
export { RelayObject } from "./objects/relay.js";
export { PathObject } from "./objects/path.js";
export { DirectoryObject } from "./objects/directory.js";
export { WatchBranchObject } from "./objects/watch-branch.js";
export { PeerShardObject } from "./objects/peer-shard.js";
export { LeaseClockObject } from "./objects/lease-clock.js";

const app = new Hono<{ Bindings: Env }>();

app.onError((err) => {
  const e = ConnectError.from(err);
  // With the error's headers: a rate limit's Retry-After.
  return connectErrorResponse(e, undefined, e.metadata);
});

app.get("/healthz", (c) => c.text("ok"));

// Operator surfaces (docs/operating.md). The dashboard page holds no data and
// asks for the admin token itself; /metrics is admin-only.
app.get("/", () => dashboardResponse());
app.get("/metrics", async (c) => {
  const who = await requireAdmin(c.req.raw.headers, c.env);
  await enforceRateLimit(c.env, "admin", who, `the ${who} admin token`);
  return c.body(rpcMetrics.render() + billing.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});

// The two Connect services. Every HTTP method reaches the pipeline, which
// answers anything but POST with a Connect error (not Hono's plain-text 404)
// so clients see why. It also counts and times every call (metrics/).
for (const service of [
  rpcService(CoordinatorService, coordinatorService, relayCaller, coordinatorFastPath),
  rpcService(AdminService, adminService, adminCaller),
]) {
  app.all(`${service.prefix}*`, (c) => serveRpc(service, c.req.path, c.req.raw, c.env));
}

// The watch channel (schema/moqworker/v1/watch.proto): one WebSocket per relay per scope.
app.all("/v1/watch", (c) => watchRoute(c.req.raw, c.env));

// The lease socket (coordinator.proto, "The lease socket"): a relay's lease held on one WebSocket.
app.all("/v1/lease", (c) => leaseRoute(c.req.raw, c.env));

/** Whether this isolate has checked the variables (a bad one is logged, then its default applies). */
let settingsChecked = false;

export default {
  fetch(request: Request, env: Env, ctx?: ExecutionContext) {
    billing.add("worker_requests");
    if (!settingsChecked) {
      settingsChecked = true;
      reportSettingProblems(env);
    }
    return app.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;
