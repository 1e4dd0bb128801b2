// A local stand-in for one region's CloudFront distribution with a Lambda@Edge function attached:
// an HTTP server in front of that region's origin (the HLS origin simulator) that runs a real
// Lambda@Edge handler module in Node.js, exactly where CloudFront runs it:
//
// - viewer-request: on every request, before the origin. The handler gets the CloudFront event
//   (Records[0].cf.config + request) and returns either the request (possibly changed: uri,
//   querystring, headers), which goes on to the origin, or a response ({status, ...}) that is sent
//   to the viewer instead.
// - origin-response: on every origin response (this edge caches nothing, so every request is a
//   cache miss). The handler gets the request and the origin's response (status, headers; no
//   body, as in CloudFront) and returns the response to send; a `body` in it replaces the origin's.
//
// Headers in events are CloudFront's shape: lowercase names -> [{key, value}]. Statuses in
// responses may be numbers or strings (CloudFront sends strings). A handler that throws or times
// out gives a 503, an invalid result a 502, as CloudFront does (LambdaExecutionError,
// LambdaValidationError); an origin that cannot be reached gives a 502.
//
// Every response gets `Access-Control-Allow-Origin: *` when it has none, standing for the CORS
// response headers policy a distribution serving a browser player has, so a 404 the handler
// generates reaches the player as a 404 rather than a CORS failure.
//
// kill() closes the listener and resets open connections (viewers get ECONNREFUSED, as when a
// region's edge is unreachable); revive() listens again on the same port.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer',
]);

/** Node's raw header list -> CloudFront's {lowercase: [{key, value}]}. */
export function toCfHeaders(rawHeaders) {
  const out = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const key = rawHeaders[i];
    const lower = key.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    (out[lower] ??= []).push({ key, value: String(rawHeaders[i + 1]) });
  }
  return out;
}

/** CloudFront headers -> a flat list for res.writeHead / http.request. */
export function fromCfHeaders(cf) {
  const out = [];
  for (const [lower, values] of Object.entries(cf ?? {})) {
    if (!Array.isArray(values)) continue;
    for (const v of values) {
      if (v == null || v.value == null) continue;
      out.push([v.key ?? lower, String(v.value)]);
    }
  }
  return out;
}

/**
 * Loads a Lambda@Edge handler: `file.mjs` (export `handler`), or `file.mjs#name`. CommonJS
 * modules work too (`module.exports.handler`).
 */
export async function loadHandler(spec) {
  if (typeof spec === 'function') return spec;
  const [file, name = 'handler'] = spec.split('#');
  const mod = await import(pathToFileURL(path.resolve(file)).href);
  const fn = mod[name] ?? mod.default?.[name];
  if (typeof fn !== 'function') throw new Error(`${file} exports no function ${name}`);
  return fn;
}

/** Calls a Node.js Lambda handler (async or callback style) with a time limit. */
export function invoke(handler, event, timeoutMs, functionName) {
  const deadline = Date.now() + timeoutMs;
  const context = {
    functionName,
    functionVersion: '1',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:000000000000:function:${functionName}:1`,
    awsRequestId: randomUUID(),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    callbackWaitsForEmptyEventLoop: true,
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`handler timed out after ${timeoutMs} ms`)), timeoutMs);
    try {
      const ret = handler(event, context, done);
      if (ret && typeof ret.then === 'function') ret.then((v) => done(null, v), (e) => done(e));
    } catch (e) {
      done(e);
    }
  });
}

function isResponse(r) {
  return r != null && typeof r === 'object' && r.status !== undefined && r.status !== null;
}

function statusOf(r) {
  const s = Number.parseInt(String(r.status), 10);
  return Number.isInteger(s) && s >= 100 && s <= 599 ? s : null;
}

function bodyOf(r) {
  if (r.body === undefined || r.body === null) return null;
  return r.bodyEncoding === 'base64' ? Buffer.from(String(r.body), 'base64') : Buffer.from(String(r.body));
}

/**
 * Starts an edge. Options:
 * - origin: base URL of the region's origin (http://127.0.0.1:PORT)
 * - domain: the distribution's domain name (config.distributionDomainName), e.g. d1.cloudfront.net
 * - distributionId: config.distributionId (default derived from the domain)
 * - handler: a function or a module spec for loadHandler; null = no function (plain proxy)
 * - eventType: 'viewer-request' (default) or 'origin-response'
 * - port (0 = any free), host (default 127.0.0.1)
 * - handlerTimeoutMs (default 5000, the Lambda@Edge limit for viewer triggers)
 * - onLog(entry): called for every request with {t, method, url, status, by}
 */
export async function startEdge(opts) {
  const origin = new URL(opts.origin);
  const domain = opts.domain;
  const eventType = opts.eventType ?? 'viewer-request';
  if (!['viewer-request', 'origin-response'].includes(eventType)) {
    throw new Error(`unsupported event type ${eventType}`);
  }
  const handler = opts.handler ? await loadHandler(opts.handler) : null;
  const handlerTimeoutMs = opts.handlerTimeoutMs ?? 5000;
  const distributionId = opts.distributionId ?? `E${domain.split('.')[0].toUpperCase()}`;
  const functionName = opts.functionName ?? 'copilot';
  const host = opts.host ?? '127.0.0.1';
  const onLog = opts.onLog ?? (() => {});
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const sockets = new Set();

  const config = (requestId) => ({
    distributionDomainName: domain,
    distributionId,
    eventType,
    requestId,
  });

  function send(res, status, headers, body, extra) {
    const list = headers.filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()) && k.toLowerCase() !== 'content-length');
    if (!list.some(([k]) => k.toLowerCase() === 'access-control-allow-origin')) {
      list.push(['Access-Control-Allow-Origin', '*']);
    }
    if (body !== null && body !== undefined && !Buffer.isBuffer(body)) {
      // A stream: pass the origin's length through when the body is the origin's.
      if (extra?.contentLength) list.push(['Content-Length', extra.contentLength]);
      res.writeHead(status, list.flat());
      body.pipe(res);
      return;
    }
    const buf = body ?? Buffer.alloc(0);
    list.push(['Content-Length', String(buf.length)]);
    res.writeHead(status, list.flat());
    res.end(res.req.method === 'HEAD' ? undefined : buf);
  }

  function generated(res, r) {
    const status = statusOf(r);
    if (status === null) return send(res, 502, [['Content-Type', 'text/plain']], Buffer.from('LambdaValidationError: bad status\n'));
    return send(res, status, fromCfHeaders(r.headers), bodyOf(r) ?? Buffer.alloc(0));
  }

  function toOrigin(cfRequest) {
    const qs = cfRequest.querystring ? `?${cfRequest.querystring}` : '';
    const headers = fromCfHeaders(cfRequest.headers).filter(([k]) => k.toLowerCase() !== 'host');
    headers.push(['Host', origin.host]);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          protocol: origin.protocol,
          hostname: origin.hostname,
          port: origin.port,
          method: cfRequest.method,
          path: `${cfRequest.uri}${qs}`,
          headers: Object.fromEntries(groupHeaders(headers)),
          agent,
          timeout: 30_000,
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error('origin read timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  async function handle(req, res) {
    const t = Date.now();
    const url = new URL(req.url, `http://${domain}`);
    const requestId = randomUUID();
    const request = {
      clientIp: req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1',
      headers: { ...toCfHeaders(req.rawHeaders), host: [{ key: 'Host', value: domain }] },
      method: req.method,
      querystring: url.search.replace(/^\?/, ''),
      uri: url.pathname,
    };
    const log = (status, by) => onLog({ t, method: req.method, url: req.url, status, by });
    let cfRequest = request;
    if (handler && eventType === 'viewer-request') {
      let result;
      try {
        result = await invoke(handler, { Records: [{ cf: { config: config(requestId), request } }] }, handlerTimeoutMs, functionName);
      } catch (e) {
        log(503, 'handler-error');
        return send(res, 503, [['Content-Type', 'text/plain']], Buffer.from(`LambdaExecutionError: ${e.message}\n`));
      }
      if (isResponse(result)) {
        log(statusOf(result) ?? 502, 'handler');
        return generated(res, result);
      }
      if (!result || typeof result.uri !== 'string') {
        log(502, 'handler-invalid');
        return send(res, 502, [['Content-Type', 'text/plain']], Buffer.from('LambdaValidationError: neither request nor response\n'));
      }
      cfRequest = result;
    }
    let up;
    try {
      up = await toOrigin(cfRequest);
    } catch (e) {
      log(502, 'origin-error');
      return send(res, 502, [['Content-Type', 'text/plain']], Buffer.from(`origin unreachable: ${e.code ?? e.message}\n`));
    }
    if (handler && eventType === 'origin-response') {
      const response = {
        status: String(up.statusCode),
        statusDescription: up.statusMessage ?? '',
        headers: toCfHeaders(up.rawHeaders),
      };
      const originDesc = { custom: { domainName: origin.hostname, port: Number(origin.port) || 80, protocol: 'http', path: '' } };
      let result;
      try {
        result = await invoke(
          handler,
          { Records: [{ cf: { config: config(requestId), request: { ...cfRequest, origin: originDesc }, response } }] },
          handlerTimeoutMs * 6,
          functionName,
        );
      } catch (e) {
        up.resume();
        log(503, 'handler-error');
        return send(res, 503, [['Content-Type', 'text/plain']], Buffer.from(`LambdaExecutionError: ${e.message}\n`));
      }
      if (!isResponse(result) || statusOf(result) === null) {
        up.resume();
        log(502, 'handler-invalid');
        return send(res, 502, [['Content-Type', 'text/plain']], Buffer.from('LambdaValidationError: no response\n'));
      }
      const body = bodyOf(result);
      const status = statusOf(result);
      log(status, status === up.statusCode ? 'origin' : 'handler');
      if (body !== null) {
        up.resume();
        return send(res, status, fromCfHeaders(result.headers), body);
      }
      return send(res, status, fromCfHeaders(result.headers), up, { contentLength: up.headers['content-length'] });
    }
    log(up.statusCode, 'origin');
    return send(res, up.statusCode, pairs(up.rawHeaders), up, { contentLength: up.headers['content-length'] });
  }

  let server = null;
  let port = opts.port ?? 0;
  async function listen() {
    server = http.createServer((req, res) => {
      handle(req, res).catch((e) => {
        if (!res.headersSent) send(res, 500, [['Content-Type', 'text/plain']], Buffer.from(`edge error: ${e.message}\n`));
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 5000;
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, exclusive: true }, resolve);
    });
    port = server.address().port;
  }
  async function close() {
    if (!server) return;
    const s = server;
    server = null;
    const closed = new Promise((resolve) => s.close(resolve));
    for (const sock of sockets) sock.destroy();
    sockets.clear();
    await closed;
  }
  await listen();
  return {
    get url() {
      return `http://${host}:${port}`;
    },
    get port() {
      return port;
    },
    domain,
    /** Closes the listener and resets connections: viewers get ECONNREFUSED. */
    kill: close,
    /** Listens again on the same port. */
    revive: async () => {
      if (!server) await listen();
    },
    get alive() {
      return server !== null;
    },
    stop: async () => {
      await close();
      agent.destroy();
    },
  };
}

function pairs(raw) {
  const out = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

function groupHeaders(list) {
  const m = new Map();
  for (const [k, v] of list) {
    const prev = m.get(k);
    m.set(k, prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]);
  }
  return m;
}
