// A minimal WebSocket client on a plain TCP socket (RFC 6455), for holding
// thousands of sockets in one process (bench/fleet.mjs): no per-socket
// objects beyond the net.Socket and a parser state, frames built once and
// written as they are. Client frames are masked, as the RFC requires; a
// frame sent many times (a ping, a relay's HeartbeatRequest) is masked once
// and its bytes reused, which the server cannot tell from a fresh mask.
// Server frames are read unmasked, fragmented ones joined; the server's close
// is answered and its pings ponged. Not a general client: no TLS, no
// extensions, no subprotocols.
import { randomBytes } from "node:crypto";
import net from "node:net";

export const OP = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

/** One masked client frame (FIN set) of `opcode` carrying `payload` (Buffer or string). */
export function frame(opcode, payload = Buffer.alloc(0)) {
  const data = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
  const n = data.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = data[i] ^ mask[i & 3];
  return out;
}

const PING = frame(OP.text, "ping");

/**
 * Opens ws://host:port/path with extra request `headers`; resolves with the
 * socket once the server answered 101, or rejects with the refusal
 * (`err.status`, `err.body`). `onMessage(data, isText)` gets each message
 * (Buffer; text as a string), `onClose(code, reason)` the end of the socket
 * (1006 when it ended without a close frame).
 */
export function openRawSocket({ host = "127.0.0.1", port, path, headers = {}, onMessage = () => {}, onClose = () => {} }) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    sock.setNoDelay(true);
    const key = randomBytes(16).toString("base64");
    let head = Buffer.alloc(0);
    let open = false;
    let closed = false;
    let buf = Buffer.alloc(0);
    let parts = [];
    let partOp = 0;
    let closeCode = 1006;
    let closeReason = "";
    const ws = {
      sock,
      /** Writes a prebuilt frame (from frame()). */
      sendFrame: (f) => {
        if (!closed) sock.write(f);
      },
      send: (data) => ws.sendFrame(frame(typeof data === "string" ? OP.text : OP.binary, data)),
      /** The text frame "ping", as relays send it. */
      ping: () => ws.sendFrame(PING),
      close: (code = 1000) => {
        if (closed) return;
        const b = Buffer.alloc(2);
        b.writeUInt16BE(code);
        sock.write(frame(OP.close, b));
        sock.end();
        setTimeout(() => sock.destroy(), 1000).unref();
      },
      get isOpen() {
        return open && !closed;
      },
    };
    const finish = () => {
      if (closed) return;
      closed = true;
      if (open) onClose(closeCode, closeReason);
    };
    sock.on("error", (e) => {
      if (!open) reject(e);
      finish();
    });
    sock.on("close", () => {
      if (!open) reject(new Error(`${path}: connection closed before the upgrade`));
      finish();
    });
    const parse = () => {
      for (;;) {
        if (buf.length < 2) return;
        const b0 = buf[0];
        const b1 = buf[1];
        let len = b1 & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          at = 10;
        }
        const masked = (b1 & 0x80) !== 0;
        const maskAt = at;
        if (masked) at += 4;
        if (buf.length < at + len) return;
        let payload = buf.subarray(at, at + len);
        if (masked) {
          payload = Buffer.from(payload);
          for (let i = 0; i < len; i++) payload[i] ^= buf[maskAt + (i & 3)];
        }
        buf = buf.subarray(at + len);
        const fin = (b0 & 0x80) !== 0;
        const opcode = b0 & 0x0f;
        if (opcode === OP.close) {
          closeCode = len >= 2 ? payload.readUInt16BE(0) : 1005;
          closeReason = len > 2 ? payload.subarray(2).toString() : "";
          if (!closed) {
            sock.write(frame(OP.close, len >= 2 ? payload.subarray(0, 2) : Buffer.alloc(0)));
            sock.end();
          }
          finish();
          return;
        }
        if (opcode === OP.ping) {
          ws.sendFrame(frame(OP.pong, payload));
          continue;
        }
        if (opcode === OP.pong) continue;
        if (opcode !== OP.continuation) {
          partOp = opcode;
          parts = [];
        }
        if (!fin) {
          parts.push(Buffer.from(payload));
          continue;
        }
        const data = parts.length ? Buffer.concat([...parts, payload]) : payload;
        parts = [];
        if (partOp === OP.text) onMessage(data.toString(), true);
        else onMessage(data, false);
      }
    };
    sock.on("data", (chunk) => {
      if (open) {
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        parse();
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = head.subarray(0, end).toString().split("\r\n");
      const status = Number(lines[0].split(" ")[1]);
      if (status !== 101) {
        // A refusal: a Connect error as JSON (read what has arrived; it is small).
        const rest = head.subarray(end + 4);
        const finishRefusal = (body) => {
          const err = new Error(`${path}: ${status} ${body}`);
          err.status = status;
          err.body = body;
          sock.destroy();
          reject(err);
        };
        const length = Number(/^content-length:\s*(\d+)/im.exec(lines.join("\n"))?.[1] ?? 0);
        if (rest.length >= length) finishRefusal(rest.toString());
        else {
          let body = rest;
          sock.removeAllListeners("data");
          sock.on("data", (c) => {
            body = Buffer.concat([body, c]);
            if (body.length >= length) finishRefusal(body.toString());
          });
          setTimeout(() => finishRefusal(body.toString()), 1000).unref();
        }
        return;
      }
      open = true;
      buf = head.subarray(end + 4);
      head = undefined;
      resolve(ws);
      parse();
    });
    sock.on("connect", () => {
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
      );
    });
  });
}
