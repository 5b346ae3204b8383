// The moq-worker Worker: HTTP routing and the Durable Object classes.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Env } from "./env.js";
import { bearerToken, requireAdmin } from "./auth/bearer.js";
import { verifyRelayClaims } from "./auth/relay-token.js";
import { connectErrorResponse, MAX_REQUEST_BYTES, serveConnect } from "./rpc/router.js";
import { rpcMetricsMiddleware } from "./metrics/middleware.js";
import { MAX_EPOCH_CHARS } from "./model/validate.js";
import { rpcMetrics } from "./metrics/registry.js";
import { dashboardResponse } from "./dashboard/serve.js";

export { ScopeObject } from "./objects/scope.js";
export { RelayObject } from "./objects/relay.js";
export { PathObject } from "./objects/path.js";
export { DirectoryObject } from "./objects/directory.js";

const EPOCH_HEADER = "moq-relay-epoch";

const app = new Hono<{ Bindings: Env }>();

app.onError((err) => connectErrorResponse(ConnectError.from(err)));

const limit = bodyLimit({
  maxSize: MAX_REQUEST_BYTES,
  onError: () =>
    connectErrorResponse(
      new ConnectError(`request body larger than ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted),
    ),
});

app.get("/healthz", (c) => c.text("ok"));

// Operator surfaces (docs/operating.md). The dashboard page holds no data and
// asks for the admin token itself; /metrics is admin-only.
app.get("/", () => dashboardResponse());
app.get("/metrics", async (c) => {
  await requireAdmin(c.req.raw.headers, c.env.ADMIN_TOKEN);
  return c.body(rpcMetrics.render(), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
});

// Counts and times every RPC, errors included (registered before the routes so it wraps them).
app.use("/moqworker.v1.CoordinatorService/*", rpcMetricsMiddleware);
app.use("/moqworker.v1.AdminService/*", rpcMetricsMiddleware);

app.post("/moqworker.v1.CoordinatorService/*", limit, async (c) => {
  if (!c.env.TOKEN_SECRET) {
    throw new ConnectError("relay tokens cannot be verified: TOKEN_SECRET is not set", Code.Unavailable);
  }
  const secrets = c.env.TOKEN_SECRET_PREVIOUS ? [c.env.TOKEN_SECRET, c.env.TOKEN_SECRET_PREVIOUS] : [c.env.TOKEN_SECRET];
  const { relay, scopes, readOnly } = await verifyRelayClaims(secrets, bearerToken(c.req.raw.headers));
  const epoch = c.req.header(EPOCH_HEADER);
  if (epoch !== undefined && (epoch === "" || epoch.length > MAX_EPOCH_CHARS)) {
    throw new ConnectError(`${EPOCH_HEADER} header must be 1 to ${MAX_EPOCH_CHARS} characters`, Code.InvalidArgument);
  }
  return serveConnect(c.req.raw, c.env, { relay, epoch, scopes, readOnly });
});

app.post("/moqworker.v1.AdminService/*", limit, async (c) => {
  await requireAdmin(c.req.raw.headers, c.env.ADMIN_TOKEN);
  return serveConnect(c.req.raw, c.env);
});

// Connect RPCs are POST only. Other methods get a Connect error (not Hono's
// plain-text 404) so clients see why.
for (const service of ["CoordinatorService", "AdminService"]) {
  app.all(`/moqworker.v1.${service}/*`, (c) => {
    const res = connectErrorResponse(
      new ConnectError(`HTTP ${c.req.method} is not supported: Connect RPCs take POST`, Code.Unimplemented),
      405,
    );
    res.headers.set("allow", "POST");
    return res;
  });
}

export default app;
