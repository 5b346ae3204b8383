// GET /: the operator dashboard, one static page. It holds no data itself:
// the page asks for the admin token and reads the admin API with it, so
// serving the page needs no credential. Its inline script and style run under
// a per-response nonce; nothing else may run or be fetched from elsewhere.
import formatSource from "../gen/dashboard/format-source.js";
import page from "./index.html";

// The CLI's formatting module (./format.js), inlined into the page's script
// without its `export` keywords: namespaces and times look the same in both.
const SHARED_FORMAT = "/* shared formatting: src/dashboard/format.js */";
const withFormat = page.replace(SHARED_FORMAT, formatSource.replace(/^export /gm, ""));

export function dashboardResponse(): Response {
  const nonce = crypto.randomUUID().replace(/-/g, "");
  const html = withFormat.replace("<script>", `<script nonce="${nonce}">`).replace("<style>", `<style nonce="${nonce}">`);
  return new Response(html, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "content-security-policy":
        `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; ` +
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    },
  });
}
