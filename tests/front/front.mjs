// A reference relay front for tier1's end-to-end tests: what an OmniRoute-style TypeScript
// gateway does on /api/v1/relay/chat/completions, in plain Node.js ESM with no dependencies.
//
//   MODE=ts       call the provider directly (the slow in-process path)
//   MODE=bifrost  always relay to the sidecar at BIFROST_BASE_URL
//   MODE=auto     relay to the sidecar; if it is unreachable or gives no response headers within
//                 BIFROST_TIMEOUT_MS (or, with FALLBACK_ON_5XX=1, answers 5xx), answer through
//                 the ts path and rest the sidecar for OMNIROUTE_BIFROST_FAILURE_COOLDOWN_MS,
//                 marking answers `X-Routing-Fallback: bifrost-error` then
//                 `bifrost-cooldown; remaining=N`.
//
// Environment: PORT (0: any), MODE, BIFROST_BASE_URL, BIFROST_API_KEY (sent as a bearer only when
// set; when it is not, FORWARD_CALLER_AUTH=1 forwards the caller's own Authorization, as newer
// OmniRoute fronts do), BIFROST_TIMEOUT_MS (30000), OMNIROUTE_BIFROST_FAILURE_COOLDOWN_MS (5000),
// PROVIDER_BASE_URL and PROVIDER_KEY (the ts path), CLIENT_KEYS (comma-separated; the caller's
// key identifies its token id).
import http from "node:http";
import crypto from "node:crypto";

const env = process.env;
const mode = env.MODE ?? "auto";
const bifrost = env.BIFROST_BASE_URL ?? "http://127.0.0.1:8080";
const bifrostKey = env.BIFROST_API_KEY ?? "";
const forwardCallerAuth = env.FORWARD_CALLER_AUTH === "1";
const timeoutMs = Number(env.BIFROST_TIMEOUT_MS ?? 30000);
const cooldownMs = Number(env.OMNIROUTE_BIFROST_FAILURE_COOLDOWN_MS ?? 5000);
const fallbackOn5xx = env.FALLBACK_ON_5XX === "1";
const providerBase = env.PROVIDER_BASE_URL ?? "http://127.0.0.1:9090/v1";
const providerKey = env.PROVIDER_KEY ?? "";
const clientKeys = (env.CLIENT_KEYS ?? "client-key").split(",").filter(Boolean);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

let restUntil = 0;

function tokenId(key) {
  return "tok-" + crypto.createHash("sha256").update(key).digest("hex").slice(0, 12);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

// Sends a request; resolves with the upstream response as soon as its headers arrive.
function send(url, headers, body, headerTimeoutMs) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const up = http.request(
      { hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: "POST", headers, agent },
      (res) => {
        clearTimeout(timer);
        resolve(res);
      },
    );
    const timer = headerTimeoutMs
      ? setTimeout(() => up.destroy(new Error("bifrost timeout")), headerTimeoutMs)
      : null;
    up.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    up.end(body);
  });
}

function pipe(res, up, extra = {}) {
  const headers = { ...extra };
  for (const h of ["content-type", "retry-after", "x-request-id", "x-tier1-provider", "x-tier1-model", "x-tier1-attempts", "x-tier1-limit", "x-tier1-fallback-reason"]) {
    if (up.headers[h] !== undefined) headers[h] = up.headers[h];
  }
  res.writeHead(up.statusCode, headers);
  up.pipe(res); // byte for byte, SSE included
}

// The in-process path: the provider itself, with the provider prefix stripped from the model.
async function viaTs(res, body, extra) {
  const json = JSON.parse(body.toString("utf8"));
  if (typeof json.model === "string" && json.model.includes("/")) json.model = json.model.split("/").slice(1).join("/");
  const headers = { "content-type": "application/json" };
  if (providerKey) headers.authorization = `Bearer ${providerKey}`;
  const up = await send(`${providerBase}/chat/completions`, headers, JSON.stringify(json), 0);
  pipe(res, up, extra);
}

async function relay(req, res, body, key) {
  const headers = {
    "content-type": "application/json",
    "x-relay-token-id": tokenId(key),
    "x-relay-client-ip": req.socket.remoteAddress ?? "",
    "x-omniroute-provider-manifest-url": "http://front.invalid/manifest.json",
  };
  if (bifrostKey) headers.authorization = `Bearer ${bifrostKey}`;
  else if (forwardCallerAuth && req.headers.authorization) headers.authorization = req.headers.authorization;
  for (const h of ["x-request-id", "x-correlation-id", "accept"]) {
    if (req.headers[h]) headers[h] = req.headers[h];
  }
  const url = `${bifrost}/v1/chat/completions`;
  if (mode === "bifrost") {
    try {
      pipe(res, await send(url, headers, body, timeoutMs));
    } catch (e) {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `bifrost unreachable: ${e.message}` } }));
    }
    return;
  }
  const now = Date.now();
  if (now < restUntil) {
    const remaining = Math.ceil((restUntil - now) / 1000);
    return viaTs(res, body, { "x-routing-fallback": `bifrost-cooldown; remaining=${remaining}` });
  }
  try {
    const up = await send(url, headers, body, timeoutMs);
    if (fallbackOn5xx && up.statusCode >= 500) {
      up.resume();
      throw new Error(`bifrost answered ${up.statusCode}`);
    }
    pipe(res, up);
  } catch (e) {
    restUntil = Date.now() + cooldownMs;
    return viaTs(res, body, { "x-routing-fallback": "bifrost-error" });
  }
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.method === "GET" && req.url === "/health") {
      res.writeHead(200, { "content-type": "application/json" });
      return res.end('{"status":"ok"}');
    }
    if (req.method !== "POST" || req.url !== "/api/v1/relay/chat/completions") {
      res.writeHead(404);
      return res.end();
    }
    const key = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    if (!clientKeys.includes(key)) {
      res.writeHead(401, { "content-type": "application/json" });
      return res.end('{"error":{"message":"invalid key"}}');
    }
    const body = await readBody(req);
    if (mode === "ts") return await viaTs(res, body, {});
    await relay(req, res, body, key);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { message: String(e) } }));
  }
});

server.listen(Number(env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`front listening on http://127.0.0.1:${server.address().port} (mode ${mode})`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
