'use strict';
// The real bundle (edge-lambda/bundle) run by Node on CloudFront event fixtures, reading
// DynamoDB Local through a proxy that counts, delays or refuses. Needs AWS_ENDPOINT_URL_DYNAMODB
// (tests/env/up.sh); `make edge-test` starts the environment.

const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const DYNAMO = h.dynamoEndpoint();
const TABLE = `cvs-edge-test-${process.pid}-${Date.now()}`;
const admin = h.adminClient();
let proxy;
let n = 0;
const domain = () => `d${process.pid}x${++n}.cloudfront.net`;

// Every container made by a test reads through `proxy` (its client is made at its first read).
async function container(changes = {}, raw) {
  process.env.AWS_ENDPOINT_URL_DYNAMODB = proxy.url;
  return h.loadContainer(raw !== undefined ? raw : h.config(TABLE, changes));
}

function assertNotFound(answer, maxAge = 2) {
  assert.equal(answer.status, '404');
  assert.equal(answer.statusDescription, 'Not Found');
  for (const [name, values] of Object.entries(answer.headers)) {
    assert.equal(name, name.toLowerCase(), 'header keys are lower case');
    assert.ok(Array.isArray(values) && values.length === 1, `${name} is a list`);
    assert.equal(values[0].key.toLowerCase(), name);
    assert.equal(typeof values[0].value, 'string');
  }
  assert.equal(answer.headers['cache-control'][0].value, `max-age=${maxAge}, s-maxage=${maxAge}`);
  assert.equal(answer.bodyEncoding, 'text');
  assert.equal(typeof answer.body, 'string');
}

test.before(async () => {
  await h.createTable(admin, TABLE);
});

test.beforeEach(async () => {
  proxy = await h.startProxy(DYNAMO);
});

test.afterEach(async () => {
  await proxy.stop().catch(() => {});
});

for (const trigger of ['origin-response', 'viewer-request']) {
  const passThroughOf = (event) => (trigger === 'viewer-request' ? event.Records[0].cf.request : event.Records[0].cf.response);

  test(`${trigger}: open instance passes through unchanged`, async () => {
    const d = domain();
    await h.putItem(admin, TABLE, d, true);
    const fn = await container({ trigger });
    const event = h.fixture(trigger, { domain: d });
    const before = JSON.parse(JSON.stringify(event));
    const answer = await fn.handler(event);
    assert.equal(answer, passThroughOf(event), 'the very object CloudFront gave');
    assert.deepEqual(event, before, 'nothing in the event changed');
  });

  test(`${trigger}: closed instance answers a CloudFront 404`, async () => {
    const d = domain();
    await h.putItem(admin, TABLE, d, false);
    const fn = await container({ trigger, notFoundMaxAge: 1 });
    const answer = await fn.handler(h.fixture(trigger, { domain: d }));
    assertNotFound(answer, 1);
    if (trigger === 'origin-response') {
      // Via is read-only in origin-response: it is kept; the origin's caching headers are not.
      assert.deepEqual(answer.headers.via, h.fixture(trigger).Records[0].cf.response.headers.via);
      assert.equal(answer.headers.etag, undefined);
      assert.equal(answer.headers['content-length'], undefined);
    } else {
      assert.equal(answer.headers.via, undefined);
    }
    // Anything but playlists and segments still passes through.
    const page = h.fixture(trigger, { domain: d, uri: '/index.html' });
    assert.equal(await fn.handler(page), passThroughOf(page));
  });

  test(`${trigger}: missing item passes through`, async () => {
    const fn = await container({ trigger });
    const event = h.fixture(trigger, { domain: domain() });
    assert.equal(await fn.handler(event), passThroughOf(event));
    assert.equal(proxy.state.getItems, 1);
  });
}

test('malformed item (distro_open as the string "false"): never read as closed or open', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, undefined, { distro_open: { S: 'false' } });
  const fn = await container({ cacheSeconds: 1 });
  const event = h.fixture('origin-response', { domain: d });
  assert.equal(await fn.handler(event), event.Records[0].cf.response, 'never known: pass through');

  // Known closed, then the item turns malformed: stays closed.
  const d2 = domain();
  await h.putItem(admin, TABLE, d2, false);
  assertNotFound(await fn.handler(h.fixture('origin-response', { domain: d2 })));
  await h.putItem(admin, TABLE, d2, undefined, { distro_open: { S: 'true' } });
  await h.sleep(1_200);
  assertNotFound(await fn.handler(h.fixture('origin-response', { domain: d2 })));
  assert.equal(proxy.state.getItems, 3, 'the malformed item was read, not skipped');
});

test('DynamoDB stopped: last known state is served; nothing known passes through', async () => {
  const closed = domain();
  await h.putItem(admin, TABLE, closed, false);
  const fn = await container({ cacheSeconds: 1, readTimeoutMillis: 500 });
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: closed })));
  await proxy.stop(); // connections are now refused
  await h.sleep(1_200);
  const started = Date.now();
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: closed })));
  assert.ok(Date.now() - started < 5_000, 'answered within the trigger limit');
  const never = h.fixture('viewer-request', { domain: domain() });
  assert.equal(await fn.handler(never), never.Records[0].cf.request);
});

test('DynamoDB slow: the answer comes within the read timeout, from the last known state', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, false);
  const fn = await container({ cacheSeconds: 1, readTimeoutMillis: 200, coldReadTimeoutMillis: 200 });
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: d })));
  // The item opens, but DynamoDB now takes 4 s to answer: the copilot must not wait for it.
  await h.putItem(admin, TABLE, d, true);
  proxy.state.delayMillis = 4_000;
  await h.sleep(1_200);
  const started = Date.now();
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: d })), 2);
  const took = Date.now() - started;
  assert.ok(took < 3_000, `answered in ${took} ms, before DynamoDB's 4 s answer`);
  // A cold container against the slow table passes through in time.
  const cold = await container({ readTimeoutMillis: 200, coldReadTimeoutMillis: 300 });
  const event = h.fixture('viewer-request', { domain: d });
  const t0 = Date.now();
  assert.equal(await cold.handler(event), event.Records[0].cf.request);
  assert.ok(Date.now() - t0 < 3_000);
});

test('cold start: config, WebAssembly and client load; first request reads once and decides', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, false);
  const fn = await container({ trigger: 'viewer-request' });
  assert.equal(proxy.state.getItems, 0, 'no read at load');
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: d })));
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: d })));
  assert.equal(proxy.state.getItems, 1);
});

test('a cold read may take longer than a warm one before passing through', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, false);
  proxy.state.delayMillis = 600;
  const fn = await container({ trigger: 'viewer-request', readTimeoutMillis: 100, coldReadTimeoutMillis: 2000 });
  assertNotFound(await fn.handler(h.fixture('viewer-request', { domain: d })), 2);
});

test('cache expiry: a change is seen after cacheSeconds, not before', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, false);
  const fn = await container({ trigger: 'viewer-request', cacheSeconds: 1 });
  const event = () => h.fixture('viewer-request', { domain: d });
  assertNotFound(await fn.handler(event()));
  await h.putItem(admin, TABLE, d, true);
  assertNotFound(await fn.handler(event()), 2);
  assert.equal(proxy.state.getItems, 1, 'served from the cache');
  await h.sleep(1_200);
  const e = event();
  assert.equal(await fn.handler(e), e.Records[0].cf.request, 'reopened after expiry');
  assert.equal(proxy.state.getItems, 2);
});

test('100 concurrent invocations on one key share one read', async () => {
  const d = domain();
  await h.putItem(admin, TABLE, d, false);
  const fn = await container({ trigger: 'viewer-request' });
  proxy.state.delayMillis = 100; // keep the read in flight while the others arrive
  const answers = await Promise.all(
    Array.from({ length: 100 }, () => fn.handler(h.fixture('viewer-request', { domain: d }))),
  );
  for (const a of answers) assertNotFound(a);
  assert.equal(proxy.state.getItems, 1);
});

test('never throws into CloudFront', async () => {
  const fn = await container();
  assert.equal(await fn.handler({}), undefined);
  assert.equal(await fn.handler({ Records: [] }), undefined);
  // A bad config.json disables the copilot: everything passes through.
  process.env.AWS_ENDPOINT_URL_DYNAMODB = proxy.url;
  for (const bad of ['{"version":2}', 'not json', null]) {
    const broken = h.loadContainer(bad === null ? undefined : bad);
    const event = h.fixture('viewer-request', { domain: domain() });
    assert.equal(await broken.handler(event), event.Records[0].cf.request);
  }
  assert.equal(proxy.state.getItems, 0);
});
