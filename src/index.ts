// The moq-worker Worker: HTTP routing and the Durable Object classes.
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Env } from "./env.js";
import { bearerToken, requireAdmin } from "./auth/bearer.js";
import { verifyRelayToken } from "./auth/relay-token.js";
import { connectErrorResponse, MAX_REQUEST_BYTES, serveConnect } from "./rpc/router.js";

export { ScopeObject } from "./objects/scope.js";
export { RelayObject } from "./objects/relay.js";
export { PathObject } from "./objects/path.js";

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

app.post("/moqworker.v1.CoordinatorService/*", limit, async (c) => {
  if (!c.env.TOKEN_SECRET) {
    throw new ConnectError("relay tokens cannot be verified: TOKEN_SECRET is not set", Code.Unavailable);
  }
  const relay = await verifyRelayToken(c.env.TOKEN_SECRET, bearerToken(c.req.raw.headers));
  const epoch = c.req.header(EPOCH_HEADER);
  if (epoch !== undefined && (epoch === "" || epoch.length > 128)) {
    throw new ConnectError(`${EPOCH_HEADER} header must be 1 to 128 characters`, Code.InvalidArgument);
  }
  return serveConnect(c.req.raw, c.env, { relay, epoch });
});

app.post("/moqworker.v1.AdminService/*", limit, async (c) => {
  await requireAdmin(c.req.raw.headers, c.env.ADMIN_TOKEN);
  return serveConnect(c.req.raw, c.env);
});

export default app;
