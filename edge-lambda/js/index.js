'use strict';
// The copilot's Lambda@Edge handler (Node.js 20/22 runtime, CommonJS). The decision is the
// edge-lambda crate compiled to WebAssembly (./edge_lambda.js + ./edge_lambda_bg.wasm); this file
// only reads the instance's state-table item, caches it, and shapes the answer. It never throws
// into CloudFront: on any failure it passes the event through. See edge-lambda/README.md.
//
// Per container (one Node.js process serves invocations one after another):
// - config.json (baked into the zip by the operator) is read once, at load;
// - one DynamoDB client, created at the first read, in the table region nearest this edge region;
// - per distribution domain: the last known state, when it expires (cacheSeconds), and at most
//   one read in flight, shared by every invocation that needs it;
// - a read that fails or takes longer than readTimeoutMillis leaves the last known state in
//   place for another cacheSeconds; when no state is known yet the read may take up to
//   coldReadTimeoutMillis (the first read pays for loading the SDK), then the event passes through.

const fs = require('fs');
const path = require('path');

const UNKNOWN = 0;
const MALFORMED_FLAG = 8;
// Headers CloudFront does not let an origin-response function change or remove.
const READ_ONLY_ORIGIN_RESPONSE_HEADERS = ['transfer-encoding', 'via'];

function log(level, message, fields) {
  console.log(JSON.stringify({ level, message, ...fields }));
}

let copilot = null;
try {
  const { Copilot } = require('./edge_lambda.js');
  copilot = new Copilot(fs.readFileSync(path.join(__dirname, 'config.json'), 'utf8'));
} catch (err) {
  // Without a valid configuration the function has no say: everything passes through.
  log('error', 'copilot disabled: cannot load config.json or the WebAssembly module', {
    error: String(err && err.message ? err.message : err),
  });
}

const cacheMillis = copilot ? copilot.cacheMillis() : 0;
const readTimeoutMillis = copilot ? copilot.readTimeoutMillis() : 0;
const coldReadTimeoutMillis = copilot ? copilot.coldReadTimeoutMillis() : 0;
const notFoundJson = copilot ? copilot.notFoundResponse() : '';

/** domain -> { state, expires, inflight } */
const entries = new Map();
let client = null;
let sdk = null;

function dynamo() {
  if (!client) {
    // Provided by the Lambda Node.js runtime; loaded at the first read, not at cold start.
    sdk = require('@aws-sdk/client-dynamodb');
    const region = copilot.readRegion(process.env.AWS_REGION || '');
    client = new sdk.DynamoDBClient({ region, maxAttempts: 2 });
  }
  return client;
}

// Resolves with the raw item (DynamoDB JSON) or undefined; rejects on failure or timeout.
async function readItem(domain, limitMillis) {
  const abort = new AbortController();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(new Error(`no answer within ${limitMillis} ms`));
    }, limitMillis);
  });
  try {
    const command = new sdk.GetItemCommand({
      TableName: copilot.table(),
      Key: { domain: { S: domain } },
      ProjectionExpression: 'distro_open',
    });
    // The race bounds the wait even if the SDK were to ignore the abort signal.
    const answer = await Promise.race([
      dynamo().send(command, { abortSignal: abort.signal }),
      timeout,
    ]);
    return answer.Item;
  } finally {
    clearTimeout(timer);
  }
}

async function refresh(domain, entry) {
  try {
    if (!client) dynamo();
    const item = await readItem(domain, entry.state === UNKNOWN ? coldReadTimeoutMillis : readTimeoutMillis);
    const json = item === undefined ? '' : JSON.stringify(item);
    const code = copilot.foldItem(entry.state, json);
    if (code & MALFORMED_FLAG) {
      log('warn', 'malformed state-table item: keeping the last known state', {
        domain, why: copilot.describeItem(json), state: code & 7,
      });
    }
    entry.state = code & 7;
  } catch (err) {
    log('warn', 'state-table read failed: keeping the last known state', {
      domain, error: String(err && err.message ? err.message : err), state: entry.state,
    });
  }
  entry.expires = Date.now() + cacheMillis;
  entry.inflight = null;
  return entry.state;
}

function stateFor(domain) {
  let entry = entries.get(domain);
  if (entry && Date.now() < entry.expires) return entry.state;
  if (!entry) {
    entry = { state: UNKNOWN, expires: 0, inflight: null };
    entries.set(domain, entry);
  }
  if (!entry.inflight) entry.inflight = refresh(domain, entry);
  return entry.inflight;
}

function notFound(cf) {
  const answer = JSON.parse(notFoundJson);
  const original = cf.response && cf.response.headers;
  if (original) {
    for (const name of READ_ONLY_ORIGIN_RESPONSE_HEADERS) {
      if (original[name]) answer.headers[name] = original[name];
    }
  }
  return answer;
}

exports.handler = async (event) => {
  let cf;
  let passThrough;
  try {
    cf = event.Records[0].cf;
    passThrough = cf.config.eventType === 'viewer-request' ? cf.request : (cf.response || cf.request);
  } catch (err) {
    log('error', 'not a CloudFront event', { error: String(err) });
    return undefined;
  }
  if (!copilot) return passThrough;
  try {
    const domain = cf.config.distributionDomainName;
    let state = stateFor(domain);
    if (typeof state !== 'number') state = await state;
    return copilot.decide(cf.request.uri, state) ? notFound(cf) : passThrough;
  } catch (err) {
    log('error', 'copilot failed: passing through', { error: String(err && err.stack ? err.stack : err) });
    return passThrough;
  }
};
