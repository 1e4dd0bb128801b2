// The real copilot bundle (edge-lambda/bundle) runs in the local edge unchanged: laid out as the
// operator's zip (bundle files + config.json) with the SDK the Lambda runtime would provide, it
// loads through the edge's handler loader and answers the edge's CloudFront events. Here the
// table cannot be reached (DynamoDB on a closed port), so it must pass every request through,
// as the copilot does while it knows no state. Closing a region through DynamoDB Local with the
// real table is the next step (the demo and the e2e environment have DynamoDB Local).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startEdge } from '../lib/edge.mjs';
import { REPO, request } from '../lib/harness.mjs';

const EDGE = path.join(REPO, 'edge-lambda');

/** A copilot "container" directory: bundle/ + config.json + node_modules (the runtime's SDK). */
function container(config) {
  execFileSync(path.join(EDGE, 'test', 'npm-ci.sh'), { stdio: ['ignore', 'ignore', 'inherit'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cvs-copilot-'));
  for (const f of fs.readdirSync(path.join(EDGE, 'bundle'))) fs.copyFileSync(path.join(EDGE, 'bundle', f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.symlinkSync(path.join(EDGE, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

test('the copilot bundle runs in the local edge on viewer-request and origin-response', { skip: !fs.existsSync(path.join(EDGE, 'bundle', 'index.js')) && 'no copilot bundle' }, async () => {
  process.env.AWS_ENDPOINT_URL_DYNAMODB = 'http://127.0.0.1:1';
  process.env.AWS_ACCESS_KEY_ID ??= 'test';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
  process.env.AWS_REGION ??= 'us-east-1';
  const origin = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'video/mp2t' });
    res.end(`seg:${req.url}`);
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
  try {
    for (const trigger of ['viewer-request', 'origin-response']) {
      const dir = container({ version: 1, table: 'cvs-state', homeRegion: 'us-east-1', trigger, cacheSeconds: 1, readTimeoutMillis: 200, coldReadTimeoutMillis: 400 });
      const edge = await startEdge({
        origin: `http://127.0.0.1:${origin.address().port}`,
        domain: 'd1use1.cloudfront.net',
        handler: path.join(dir, 'index.js'),
        eventType: trigger,
      });
      try {
        const r = await request('GET', `${edge.url}/s0001/720p/1000.ts`);
        assert.equal(r.status, 200, `${trigger}: ${r.body}`);
        assert.equal(r.body, 'seg:/s0001/720p/1000.ts');
      } finally {
        await edge.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    origin.close();
  }
});
