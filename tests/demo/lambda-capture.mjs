#!/usr/bin/env node
// Stands between the operator and moto's Lambda API and keeps every deployment zip the operator
// sends (CreateFunction and UpdateFunctionCode carry it as base64 `ZipFile`), so the demo's edges
// can run exactly the code the operator deployed: moto keeps the zip but neither serves it at the
// Code.Location it answers nor exposes it otherwise without Docker. Everything else passes
// through unchanged. tests/demo/deployed-copilot.py picks the zip whose SHA-256 is the deployed
// version's CodeSha256 (GetFunction on moto itself).
//
//   node tests/demo/lambda-capture.mjs --upstream http://127.0.0.1:MOTO --dir DIR --ready-file F
//
// Writes DIR/<CodeSha256, base64url>.zip; prints {"url": "http://127.0.0.1:PORT"} to the ready
// file when it listens; stops on SIGTERM/SIGINT.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    upstream: { type: 'string' },
    dir: { type: 'string' },
    'ready-file': { type: 'string' },
  },
});
if (!a.upstream || !a.dir || !a['ready-file']) {
  console.error('lambda-capture.mjs: --upstream, --dir and --ready-file are required');
  process.exit(2);
}
fs.mkdirSync(a.dir, { recursive: true });
const upstream = new URL(a.upstream);

/** The file name a zip is kept under: its Lambda CodeSha256 (base64 of SHA-256), URL-safe. */
const keepName = (codeSha256) => `${codeSha256.replaceAll('+', '-').replaceAll('/', '_')}.zip`;

function keep(body) {
  let zip;
  try {
    const j = JSON.parse(body.toString('utf8'));
    zip = j.Code?.ZipFile ?? j.ZipFile;
  } catch {
    return;
  }
  if (typeof zip !== 'string') return;
  const bytes = Buffer.from(zip, 'base64');
  const sha = crypto.createHash('sha256').update(bytes).digest('base64');
  fs.writeFileSync(path.join(a.dir, keepName(sha)), bytes);
  console.error(JSON.stringify({ kept: keepName(sha), bytes: bytes.length }));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const p = req.url.split('?')[0];
    // CreateFunction: POST /2015-03-31/functions; UpdateFunctionCode: PUT .../functions/NAME/code.
    if ((req.method === 'POST' && /\/functions\/?$/.test(p)) || (req.method === 'PUT' && /\/functions\/[^/]+\/code$/.test(p))) {
      keep(body);
    }
    const headers = { ...req.headers, host: upstream.host, 'content-length': String(body.length) };
    const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`lambda-capture: ${e.message}\n`);
    });
    up.end(body);
  });
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(a['ready-file'], `${JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` })}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
