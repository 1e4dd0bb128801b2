'use strict';
// Shared by the copilot's Node tests and its benchmark: loading the real bundle as a fresh
// Lambda container, a counting/delaying HTTP proxy in front of DynamoDB Local, and table set-up.

const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const EDGE_DIR = path.resolve(__dirname, '..');
const BUNDLE_DIR = process.env.CVS_EDGE_BUNDLE || path.join(EDGE_DIR, 'bundle');
const FIXTURES = path.join(__dirname, 'fixtures');

function fixture(name, changes = {}) {
  const event = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8'));
  const cf = event.Records[0].cf;
  if (changes.domain) cf.config.distributionDomainName = changes.domain;
  if (changes.uri) cf.request.uri = changes.uri;
  return event;
}

/**
 * A new "container": the bundle's files copied into a fresh directory with config.json, as the
 * operator's zip lays them out, and its index.js required from there (so module state, the
 * WebAssembly instance and the DynamoDB client are new). node_modules links to the test's
 * SDK install, standing in for the one the Lambda runtime provides.
 */
function loadContainer(config) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cvs-edge-'));
  for (const f of fs.readdirSync(BUNDLE_DIR)) fs.copyFileSync(path.join(BUNDLE_DIR, f), path.join(dir, f));
  if (config !== undefined) {
    fs.writeFileSync(path.join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  }
  fs.symlinkSync(path.join(EDGE_DIR, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const mod = require(path.join(dir, 'index.js'));
  mod.dir = dir;
  return mod;
}

function config(table, changes = {}) {
  return {
    version: 1,
    table,
    homeRegion: 'us-east-1',
    trigger: 'origin-response',
    cacheSeconds: 5,
    ...changes,
  };
}

/**
 * An HTTP proxy to DynamoDB Local that counts GetItem requests and can delay them or refuse
 * connections (stop()), so a test sees "DynamoDB slow" and "DynamoDB stopped" without touching
 * the shared DynamoDB Local.
 */
async function startProxy(target) {
  const upstream = new URL(target);
  const state = { getItems: 0, delayMillis: 0 };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const isGet = String(req.headers['x-amz-target'] || '').endsWith('.GetItem');
    if (isGet) state.getItems += 1;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const forward = () => {
        const up = http.request({
          host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
          headers: req.headers,
        }, (upRes) => {
          res.writeHead(upRes.statusCode, upRes.headers);
          upRes.pipe(res);
        });
        up.on('error', () => res.destroy());
        up.end(Buffer.concat(chunks));
      };
      if (isGet && state.delayMillis > 0) setTimeout(forward, state.delayMillis).unref();
      else forward();
    });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function dynamoEndpoint() {
  const url = process.env.AWS_ENDPOINT_URL_DYNAMODB;
  if (!url) {
    throw new Error('AWS_ENDPOINT_URL_DYNAMODB is not set: run inside tests/env/up.sh (make edge-test)');
  }
  return url;
}

/** A client straight to DynamoDB Local, for set-up. */
function adminClient() {
  const { DynamoDBClient } = require(path.join(EDGE_DIR, 'node_modules/@aws-sdk/client-dynamodb'));
  return new DynamoDBClient({ region: 'us-east-1', endpoint: dynamoEndpoint() });
}

async function createTable(admin, name) {
  const sdk = require(path.join(EDGE_DIR, 'node_modules/@aws-sdk/client-dynamodb'));
  await admin.send(new sdk.CreateTableCommand({
    TableName: name,
    AttributeDefinitions: [{ AttributeName: 'domain', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'domain', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  }));
}

/** Writes an item as the operator does (distro_open a BOOL), or with raw attributes. */
async function putItem(admin, table, domain, open, raw) {
  const sdk = require(path.join(EDGE_DIR, 'node_modules/@aws-sdk/client-dynamodb'));
  const item = raw || {
    distro_open: { BOOL: open }, desired_open: { BOOL: open }, playlist_fresh: { BOOL: true },
    stale: { BOOL: false }, region: { S: 'eu-west-1' }, cluster: { S: 'live/event' },
    version: { N: '3' }, updated_at: { S: new Date().toISOString() },
  };
  await admin.send(new sdk.PutItemCommand({ TableName: table, Item: { domain: { S: domain }, ...item } }));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = {
  EDGE_DIR, BUNDLE_DIR, fixture, loadContainer, config, startProxy, dynamoEndpoint, adminClient,
  createTable, putItem, sleep,
};
