// Every call the soak makes, with when it started and ended and what came back.
// A call's outcome is one of:
//   ok             the Worker answered with the response message
//   error          the Worker answered with a Connect error (code)
//   not-sent       the connection was refused: the Worker cannot have seen it
//   indeterminate  the answer was lost (cut by us, timed out, connection reset by
//                  a kill): the call may or may not have taken effect
import { createWriteStream } from "node:fs";

/** Recorded calls, kept in memory (for the checker) and optionally as JSON lines. */
export class History {
  constructor(file) {
    this.ops = 0;
    this.byOutcome = { ok: 0, error: 0, "not-sent": 0, indeterminate: 0 };
    this.byMethod = new Map();
    this.codes = new Map();
    this.serverErrors = [];
    this.out = file ? createWriteStream(file) : undefined;
    this.nextId = 1;
    this.cuts = 0;
    /** Pongs on the lease sockets (counted, not recorded one by one). */
    this.pongs = 0;
  }

  record(op) {
    this.ops++;
    if (op.why === "cut") this.cuts++;
    this.byOutcome[op.outcome]++;
    this.byMethod.set(op.method, (this.byMethod.get(op.method) ?? 0) + 1);
    if (op.outcome === "error") {
      this.codes.set(op.code, (this.codes.get(op.code) ?? 0) + 1);
      if (op.status >= 500 && this.serverErrors.length < 20) this.serverErrors.push(op);
    }
    // A heartbeat's peer list is the same long list every time: only its length is kept.
    const peers = op.answer?.peers;
    this.out?.write(`${JSON.stringify(Array.isArray(peers) ? { ...op, answer: { ...op.answer, peers: peers.length } } : op)}\n`);
  }

  close() {
    return new Promise((r) => (this.out ? this.out.end(r) : r()));
  }
}

const notSent = (e) => ["ECONNREFUSED", "ECONNRESET_BEFORE_SEND"].includes(e?.cause?.code ?? e?.code);

/**
 * One Connect JSON call, recorded. `cutAfterMs`: abort that long after
 * sending (a request cut mid-flight). `timeoutMs`: give up (the edge's
 * per-attempt timeout). Never throws: resolves to the recorded op, with
 * `answer` when ok.
 */
export async function recordedCall(
  history,
  { url, service = "CoordinatorService", method, body, token, headers = {}, relay, cutAfterMs, timeoutMs = 5000, note },
) {
  const id = history.nextId++;
  const abort = new AbortController();
  let why;
  const timer = setTimeout(() => {
    why = "timeout";
    abort.abort();
  }, timeoutMs);
  const cut =
    cutAfterMs === undefined
      ? undefined
      : setTimeout(() => {
          why = "cut";
          abort.abort();
        }, cutAfterMs);
  const start = Date.now();
  const op = { id, relay, method, body, start, end: 0, outcome: "ok", note };
  // An aborted fetch has been seen to stay pending (a request cut while its
  // connection was being set up): the call is given up a second after its timeout.
  let giveUp;
  const hung = new Promise((_, reject) => {
    giveUp = setTimeout(() => {
      why ??= "hung";
      reject(new Error("no settlement after abort"));
    }, timeoutMs + 1000);
  });
  try {
    const res = await Promise.race([
      fetch(`${url}/moqworker.v1.${service}/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
        body: JSON.stringify(body),
        signal: abort.signal,
      }),
      hung,
    ]);
    const text = await Promise.race([res.text(), hung]);
    op.status = res.status;
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      // Not a Connect answer (a proxy's error page): an error all the same, by its HTTP status.
      json = { code: `http_${res.status}`, message: text.slice(0, 200) };
    }
    if (res.ok) op.answer = json;
    else {
      op.outcome = "error";
      op.code = json.code;
      op.message = json.message;
    }
  } catch (e) {
    if (why === undefined && notSent(e)) op.outcome = "not-sent";
    else {
      op.outcome = "indeterminate";
      op.why = why ?? String(e?.cause?.code ?? e?.message ?? e);
    }
  } finally {
    clearTimeout(timer);
    clearTimeout(cut);
    clearTimeout(giveUp);
    op.end = Date.now();
  }
  history.record(op);
  return op;
}
