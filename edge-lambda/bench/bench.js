'use strict';
// The copilot's benchmark (make bench-edge): warm invocation time, cold start, bundle size
// against Lambda@Edge's limits, and DynamoDB reads per 10,000 requests, for this handler and for
// the original design (a new client and a read on every invocation), measured the same way.
// Needs AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local). Prints Markdown.

const { execFile, execFileSync } = require('child_process');
const { promisify } = require('util');

const execFileAsync = promisify(execFile);
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const h = require('../test/helpers');

const WARM_CALLS = Number(process.env.BENCH_WARM_CALLS || 100000);
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS || 20);
const ORIGINAL_CALLS = Number(process.env.BENCH_ORIGINAL_CALLS || 2000);
const TABLE = `cvs-edge-bench-${process.pid}`;
const DOMAIN_OPEN = 'dopen.cloudfront.net';
const DOMAIN_CLOSED = 'dclosed.cloudfront.net';

// Nearest-rank percentile of a sorted array.
function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
function summary(samplesNs) {
  const s = Float64Array.from(samplesNs).sort();
  const us = (ns) => (ns / 1000).toFixed(1);
  return { n: s.length, median: us(pct(s, 50)), p99: us(pct(s, 99)), max: us(s[s.length - 1]) };
}

async function timeCalls(fn, makeEvent, calls) {
  const samples = new Float64Array(calls);
  for (let i = 0; i < calls; i += 1) {
    const event = makeEvent();
    const t0 = process.hrtime.bigint();
    await fn(event);
    samples[i] = Number(process.hrtime.bigint() - t0);
  }
  return summary(samples);
}

// The original system's handler design, for comparison: a new client and a read per invocation.
function originalHandler(table) {
  const sdk = require(path.join(h.EDGE_DIR, 'node_modules/@aws-sdk/client-dynamodb'));
  const notFound = { status: '404', statusDescription: 'Not Found' };
  return async (event) => {
    const cf = event.Records[0].cf;
    const client = new sdk.DynamoDBClient({ region: 'us-east-1' });
    const out = await client.send(new sdk.GetItemCommand({
      TableName: table, Key: { domain: { S: cf.config.distributionDomainName } },
    }));
    const open = !(out.Item && out.Item.distro_open && out.Item.distro_open.BOOL === false);
    return open ? (cf.response || cf.request) : notFound;
  };
}

// Deterministic zip size: deflated entries plus the local and central headers and the end record.
function zipBytes(dir, extra) {
  const files = fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]);
  files.push(...extra);
  let size = 22;
  for (const [name, data] of files) {
    size += 30 + 46 + 2 * Buffer.byteLength(name) + zlib.deflateRawSync(data, { level: 9 }).length;
  }
  return size;
}

function coldStarts() {
  const dir = h.loadContainer(h.config(TABLE)).dir;
  const script = `
    const t0 = process.hrtime.bigint();
    const m = require(${JSON.stringify(path.join(dir, 'index.js'))});
    const t1 = process.hrtime.bigint();
    process.stdout.write(String(Number(t1 - t0)));`;
  const samples = [];
  for (let i = 0; i < COLD_RUNS; i += 1) {
    samples.push(Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })));
  }
  return summary(samples);
}

async function firstAnswers(proxyUrl) {
  // Cold container to first answer: load, first SDK require and client, one read.
  const samples = [];
  for (let i = 0; i < COLD_RUNS; i += 1) {
    const script = `
      process.env.AWS_ENDPOINT_URL_DYNAMODB = ${JSON.stringify(proxyUrl)};
      const t0 = process.hrtime.bigint();
      const m = require(${JSON.stringify(path.join(h.loadContainer(h.config(TABLE)).dir, 'index.js'))});
      const ev = ${JSON.stringify(h.fixture('origin-response', { domain: DOMAIN_CLOSED }))};
      m.handler(ev).then((a) => {
        if (a.status !== '404') throw new Error('not 404: ' + JSON.stringify(a).slice(0, 200));
        process.stdout.write(String(Number(process.hrtime.bigint() - t0)));
      });`;
    // Asynchronously: the proxy the child reads through runs in this process.
    const { stdout } = await execFileAsync(process.execPath, ['--no-warnings', '-e', script], { encoding: 'utf8' });
    samples.push(Number(stdout.trim().split('\n').pop()));
  }
  return summary(samples);
}

// 10,000 requests at `rate` per second on one container, on a virtual clock (Date.now is
// replaced while it runs), counting the GetItem calls that reach DynamoDB.
async function readsPer10k(proxy, handler, rate, fakeNow) {
  const before = proxy.state.getItems;
  const realNow = Date.now;
  let now = realNow();
  if (fakeNow) Date.now = () => now;
  try {
    for (let i = 0; i < 10000; i += 1) {
      await handler(h.fixture('origin-response', { domain: DOMAIN_OPEN }));
      now += 1000 / rate;
    }
  } finally {
    Date.now = realNow;
  }
  return { reads: proxy.state.getItems - before, seconds: 10000 / rate };
}

async function main() {
  const admin = h.adminClient();
  await h.createTable(admin, TABLE);
  await h.putItem(admin, TABLE, DOMAIN_OPEN, true);
  await h.putItem(admin, TABLE, DOMAIN_CLOSED, false);
  const proxy = await h.startProxy(h.dynamoEndpoint());
  process.env.AWS_ENDPOINT_URL_DYNAMODB = proxy.url;
  const commit = (() => {
    try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: h.EDGE_DIR, encoding: 'utf8' }).trim(); } catch { return '?'; }
  })();
  const out = [];
  out.push(`Node ${process.version}, bundle at commit ${commit}, ${new Date().toISOString()}`);
  out.push('');

  // Warm invocations.
  out.push('| handler | trigger | state | calls | median µs | p99 µs | max µs |');
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const trigger of ['viewer-request', 'origin-response']) {
    const fn = h.loadContainer(h.config(TABLE, { trigger, cacheSeconds: 300 }));
    for (const [state, domain] of [['open', DOMAIN_OPEN], ['closed', DOMAIN_CLOSED]]) {
      const make = () => h.fixture(trigger, { domain });
      await fn.handler(make()); // fill the cache
      await timeCalls(fn.handler, make, 10000); // JIT warm-up
      const s = await timeCalls(fn.handler, make, WARM_CALLS);
      out.push(`| copilot | ${trigger} | ${state} | ${s.n} | ${s.median} | ${s.p99} | ${s.max} |`);
    }
  }
  const original = originalHandler(TABLE);
  await timeCalls(original, () => h.fixture('origin-response', { domain: DOMAIN_OPEN }), 200);
  const so = await timeCalls(original, () => h.fixture('origin-response', { domain: DOMAIN_OPEN }), ORIGINAL_CALLS);
  out.push(`| original design (DynamoDB Local on loopback) | origin-response | open | ${so.n} | ${so.median} | ${so.p99} | ${so.max} |`);
  out.push('');

  // Cold start.
  const cold = coldStarts();
  const first = await firstAnswers(proxy.url);
  out.push('| cold start (fresh Node process) | runs | median ms | p99 ms | max ms |');
  out.push('| --- | --- | --- | --- | --- |');
  const ms = (x) => (Number(x) / 1000).toFixed(1);
  out.push(`| require index.js (config, WebAssembly compile and instantiate) | ${cold.n} | ${ms(cold.median)} | ${ms(cold.p99)} | ${ms(cold.max)} |`);
  out.push(`| to the first answer (+ SDK load, client, one GetItem) | ${first.n} | ${ms(first.median)} | ${ms(first.p99)} | ${ms(first.max)} |`);
  out.push('');

  // Bundle size.
  const bundleBytes = fs.readdirSync(h.BUNDLE_DIR).reduce((n, f) => n + fs.statSync(path.join(h.BUNDLE_DIR, f)).size, 0);
  const wasmBytes = fs.statSync(path.join(h.BUNDLE_DIR, 'edge_lambda_bg.wasm')).size;
  const zipped = zipBytes(h.BUNDLE_DIR, [['config.json', Buffer.from(JSON.stringify(h.config(TABLE)))]]);
  out.push('| bundle | bytes | limit viewer-request (1 MB zipped) | limit origin-response (50 MB zipped) |');
  out.push('| --- | --- | --- | --- |');
  out.push(`| wasm | ${wasmBytes} | | |`);
  out.push(`| all files, unzipped | ${bundleBytes} | | |`);
  out.push(`| zip with config.json (deflate -9) | ${zipped} | ${(100 * zipped / 1048576).toFixed(1)} % | ${(100 * zipped / (50 * 1048576)).toFixed(2)} % |`);
  out.push('');

  // Reads per 10,000 requests.
  out.push('| handler | requests/s on one container | cacheSeconds | simulated s | GetItem per 10,000 requests | TTL windows |');
  out.push('| --- | --- | --- | --- | --- | --- |');
  for (const rate of [2, 20, 200]) {
    const fn = h.loadContainer(h.config(TABLE, { cacheSeconds: 5 }));
    const r = await readsPer10k(proxy, fn.handler, rate, true);
    out.push(`| copilot | ${rate} | 5 | ${r.seconds} | ${r.reads} | ${Math.ceil(r.seconds / 5)} |`);
  }
  const r = await readsPer10k(proxy, original, 20, true);
  out.push(`| original design | 20 | - | ${r.seconds} | ${r.reads} | - |`);

  await proxy.stop();
  console.log(out.join('\n'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
