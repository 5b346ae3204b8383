// What every command of the CLI shares: global options, the admin client,
// argument parsers, output, and paging.
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { InvalidArgumentError, Option } from "commander";
import { AdminService } from "../src/gen/moqworker/v1/admin_pb.js";

export const DEFAULT_URL = "http://127.0.0.1:8787";
export const DEV_ADMIN_TOKEN = "dev-admin-token";
const CALL_TIMEOUT_MS = 30_000;

export interface GlobalOptions {
  url: string;
  token: string;
  json?: boolean;
}

export type Admin = Client<typeof AdminService>;

export function adminClient(opts: GlobalOptions): Admin {
  let baseUrl: URL;
  try {
    baseUrl = new URL(opts.url);
  } catch {
    throw new UsageError(`--url: '${opts.url}' is not a URL`);
  }
  const transport = createConnectTransport({
    baseUrl: baseUrl.href.replace(/\/$/, ""),
    defaultTimeoutMs: CALL_TIMEOUT_MS,
    interceptors: [
      (next) => (req) => {
        req.header.set("authorization", `Bearer ${opts.token}`);
        return next(req);
      },
    ],
  });
  return createClient(AdminService, transport);
}

export class UsageError extends Error {}

export const wholeNumber = (what: string, min: number) => (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`must be a whole number of ${what}, at least ${min}`);
  return Number(value);
};

/** Rows per request; the command still fetches every page. */
export const pageSizeOption = (max: number) =>
  new Option("--page-size <rows>", "rows per request (every page is fetched)").argParser(wholeNumber("rows", 1)).default(max);

export function print(opts: GlobalOptions, human: () => string, json: () => unknown): void {
  process.stdout.write(`${opts.json ? JSON.stringify(json(), null, 2) : human()}\n`);
}

// Every field, defaults included, so scripts need not know proto3 JSON omits them.
export const asJson = <D extends DescMessage>(schema: D, msg: MessageShape<D>) => toJson(schema, msg, { alwaysEmitImplicit: true });

/** Follows next_page_token to the end, merging every page's lists into the first. */
export async function allPages<T extends { nextPageToken: string }>(
  fetch: (pageToken: string) => Promise<T>,
  merge: (into: T, page: T) => void,
): Promise<T> {
  const first = await fetch("");
  for (let token = first.nextPageToken; token !== ""; ) {
    const page = await fetch(token);
    merge(first, page);
    token = page.nextPageToken;
  }
  first.nextPageToken = "";
  return first;
}
