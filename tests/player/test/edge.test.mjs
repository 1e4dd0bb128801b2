// The local edge runs Lambda@Edge handlers exactly where and how CloudFront does: the event JSON
// (Records[0].cf: config, request, and for origin-response the origin's response), generated
// responses, changed requests, callback and async handlers, errors, and kill/revive.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { startEdge } from '../lib/edge.mjs';
import { HERE, request } from '../lib/harness.mjs';

let origin;
let originUrl;
const seen = [];

before(async () => {
  origin = http.createServer((req, res) => {
    seen.push({ url: req.url, host: req.headers.host, via: req.headers['x-test'] });
    res.writeHead(200, { 'content-type': 'text/plain', 'x-origin': 'yes', 'access-control-allow-origin': '*' });
    res.end(`origin:${req.url}`);
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
  originUrl = `http://127.0.0.1:${origin.address().port}`;
});
after(() => new Promise((r) => { origin.closeAllConnections(); origin.close(r); }));

async function withEdge(opts, fn) {
  const edge = await startEdge({ origin: originUrl, domain: 'd1test.cloudfront.net', ...opts });
  try {
    return await fn(edge);
  } finally {
    await edge.stop();
  }
}

test('viewer-request: the handler gets the CloudFront event and its request goes on to the origin', async () => {
  const events = [];
  const handler = async (event) => {
    events.push(event);
    const req = event.Records[0].cf.request;
    req.headers['x-test'] = [{ key: 'X-Test', value: 'from-handler' }];
    return req;
  };
  await withEdge({ handler }, async (edge) => {
    const r = await request('GET', `${edge.url}/s0001/720p/index.m3u8?_HLS_msn=5`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'origin:/s0001/720p/index.m3u8?_HLS_msn=5');
    assert.equal(r.headers['x-origin'], 'yes');
  });
  assert.equal(events.length, 1);
  const cf = events[0].Records[0].cf;
  assert.equal(cf.config.distributionDomainName, 'd1test.cloudfront.net');
  assert.equal(cf.config.eventType, 'viewer-request');
  assert.match(cf.config.distributionId, /^E/);
  assert.equal(typeof cf.config.requestId, 'string');
  assert.equal(cf.request.method, 'GET');
  assert.equal(cf.request.uri, '/s0001/720p/index.m3u8');
  assert.equal(cf.request.querystring, '_HLS_msn=5');
  assert.equal(cf.request.clientIp, '127.0.0.1');
  assert.deepEqual(cf.request.headers.host, [{ key: 'Host', value: 'd1test.cloudfront.net' }]);
  for (const [name, values] of Object.entries(cf.request.headers)) {
    assert.equal(name, name.toLowerCase());
    assert.ok(values.every((v) => typeof v.key === 'string' && typeof v.value === 'string'));
  }
  assert.equal(cf.response, undefined);
  const last = seen.at(-1);
  assert.equal(last.via, 'from-handler', 'changed headers reach the origin');
  assert.equal(last.host, new URL(originUrl).host, 'the origin sees its own host');
});

test('viewer-request: a response from the handler replaces the origin (a closed region answers 404)', async () => {
  const before = seen.length;
  const handler = (event, context, callback) => {
    assert.ok(context.getRemainingTimeInMillis() > 0);
    callback(null, { status: '404', statusDescription: 'Not Found', headers: { 'content-type': [{ key: 'Content-Type', value: 'text/plain' }] }, body: 'closed' });
  };
  await withEdge({ handler }, async (edge) => {
    const r = await request('GET', `${edge.url}/s0001/720p/1000.ts`);
    assert.equal(r.status, 404);
    assert.equal(r.body, 'closed');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['access-control-allow-origin'], '*', 'CORS policy applies to generated responses');
  });
  assert.equal(seen.length, before, 'the origin is not asked');
});

test('viewer-request: the handler can rewrite the URI; base64 bodies are decoded', async () => {
  await withEdge({ handler: async (e) => ({ ...e.Records[0].cf.request, uri: '/rewritten' }) }, async (edge) => {
    assert.equal((await request('GET', `${edge.url}/x`)).body, 'origin:/rewritten');
  });
  await withEdge({ handler: async () => ({ status: 200, body: Buffer.from('hi').toString('base64'), bodyEncoding: 'base64' }) }, async (edge) => {
    assert.equal((await request('GET', `${edge.url}/x`)).body, 'hi');
  });
});

test('origin-response: the handler sees the origin response and may replace it', async () => {
  const events = [];
  let close = false;
  const handler = async (event) => {
    events.push(event);
    const { response } = event.Records[0].cf;
    if (!close) return response;
    return { ...response, status: '404', statusDescription: 'Not Found', body: 'closed' };
  };
  await withEdge({ handler, eventType: 'origin-response' }, async (edge) => {
    let r = await request('GET', `${edge.url}/a.ts`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'origin:/a.ts');
    close = true;
    r = await request('GET', `${edge.url}/a.ts`);
    assert.equal(r.status, 404);
    assert.equal(r.body, 'closed');
  });
  const cf = events[0].Records[0].cf;
  assert.equal(cf.config.eventType, 'origin-response');
  assert.equal(cf.response.status, '200');
  assert.deepEqual(cf.response.headers['x-origin'], [{ key: 'x-origin', value: 'yes' }]);
  assert.equal(cf.request.uri, '/a.ts');
  assert.equal(cf.request.origin.custom.domainName, '127.0.0.1');
});

test('handler failures are CloudFront errors: throw -> 503, invalid result -> 502; unreachable origin -> 502', async () => {
  await withEdge({ handler: async () => { throw new Error('boom'); } }, async (edge) => {
    assert.equal((await request('GET', `${edge.url}/x`)).status, 503);
  });
  await withEdge({ handler: async () => 42 }, async (edge) => {
    assert.equal((await request('GET', `${edge.url}/x`)).status, 502);
  });
  const dead = await startEdge({ origin: 'http://127.0.0.1:1', domain: 'd9.cloudfront.net' });
  try {
    assert.equal((await request('GET', `${dead.url}/x`)).status, 502);
  } finally {
    await dead.stop();
  }
});

test('kill refuses connections; revive listens again on the same port', async () => {
  await withEdge({ handler: path.join(HERE, 'handlers', 'passthrough.mjs') }, async (edge) => {
    const port = edge.port;
    assert.equal((await request('GET', `${edge.url}/x`)).status, 200);
    await edge.kill();
    await assert.rejects(request('GET', `${edge.url}/x`), (e) => e.code === 'ECONNREFUSED');
    await edge.revive();
    assert.equal(edge.port, port);
    assert.equal((await request('GET', `${edge.url}/x`)).status, 200);
  });
});

test('a handler module is loaded by path, with an optional export name', async () => {
  const mod = await import('../handlers/switchable.mjs');
  await withEdge({ handler: `${path.join(HERE, 'handlers', 'switchable.mjs')}#handler` }, async (edge) => {
    assert.equal((await request('GET', `${edge.url}/x`)).status, 200);
    mod.setClosed('d1test.cloudfront.net', true);
    try {
      assert.equal((await request('GET', `${edge.url}/x`)).status, 404);
    } finally {
      mod.setClosed('d1test.cloudfront.net', false);
    }
  });
});
