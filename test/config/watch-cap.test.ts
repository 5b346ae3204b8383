// MAX_WATCHERS_PER_SCOPE at its edge (4 over WATCH_BRANCHES 2 in this
// project, vitest.config.ts: 2 sockets per branch): the third socket on a
// branch is refused RESOURCE_EXHAUSTED before the upgrade, naming the field
// and the variable; the scope's other branch and other scopes are unaffected;
// a closed socket frees its place.
import { describe, expect, it } from "vitest";
import { branchIndex } from "../../src/watch/branches.js";
import { freshScope, relay } from "../client.js";
import { snapshot } from "../hardening.js";
import { watch, watchRequest } from "../watch-client.js";

describe("MAX_WATCHERS_PER_SCOPE", () => {
  it("admits 2 sockets per branch, refuses a third before the upgrade, and frees a place when one closes", async () => {
    const scope = freshScope("cap");
    const r = await relay("https://cap.example.com");
    // A relay whose sockets go to the other branch of the scope.
    let n = 0;
    while (branchIndex(`https://cap-${n}.example.com/`, 2) === branchIndex(r.url, 2)) n++;
    const other = await relay(`https://cap-${n}.example.com/`);
    expect(branchIndex(other.url, 2)).not.toBe(branchIndex(r.url, 2));
    const first = await watch(r.token, scope);
    await watch(r.token, scope);
    const before = await snapshot([scope]);
    const over = await watchRequest(r.token, scope);
    expect(over.status).toBe(429);
    expect(over.webSocket).toBeNull();
    const body = (await over.json()) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toMatch(/^scope: .*MAX_WATCHERS_PER_SCOPE/);
    expect(await snapshot([scope])).toEqual(before);
    // The other branch has its own room.
    expect((await (await watch(other.token, scope)).next()).event.case).toBe("hello"); // Another scope has its own room.
    expect((await (await watch(r.token, freshScope("cap-other"))).next()).event.case).toBe("hello");
    first.ws.close(1000, "done");
    await first.closed;
    // The object learns of the close asynchronously: poll for the freed place.
    for (let i = 0; ; i++) {
      const res = await watchRequest(r.token, scope);
      if (res.status === 101) break;
      expect(i, "a closed socket frees its place").toBeLessThan(50);
      await new Promise((done) => setTimeout(done, 20));
    }
  });
});
