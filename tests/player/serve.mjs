#!/usr/bin/env node
// The player page for a person (the demo): serves page/index.html and hls.js, and proxies the
// operator's published master playlist (and steering manifest) on every request, mapping each
// CloudFront domain to its local edge (tests/player/edge.mjs), so Chromium or any browser on this
// machine plays the merged master through the local edges.
//
//   node tests/player/serve.mjs --master http://127.0.0.1:5000/bucket/live/master.m3u8 \
//     --map d1use1demo.cloudfront.net=http://127.0.0.1:9081 --map d2euw1demo.cloudfront.net=http://127.0.0.1:9082 \
//     [--steering URL] [--port 8090] [--host 127.0.0.1]
//
// Prints {"page":"http://127.0.0.1:8090/?src=...","master":"...","steering":"..."} and serves
// until SIGTERM/SIGINT. The master's steering SERVER-URI is whatever the operator published,
// mapped the same way; --steering proxies a manifest at /live/steering.json for a local one.
import { parseArgs } from 'node:util';
import { startPageServer } from './lib/harness.mjs';

const { values: a } = parseArgs({
  options: {
    master: { type: 'string' },
    steering: { type: 'string' },
    map: { type: 'string', multiple: true, default: [] },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
if (!a.master) {
  console.error('serve.mjs: --master URL is required');
  process.exit(2);
}
const map = Object.fromEntries(a.map.map((m) => {
  const i = m.indexOf('=');
  if (i < 1) throw new Error(`--map ${m}: want domain=http://host:port`);
  return [m.slice(0, i), m.slice(i + 1).replace(/\/$/, '')];
}));
const pages = await startPageServer({ port: Number(a.port), host: a.host });
const master = pages.proxy('/live/master.m3u8', a.master, map);
const steering = a.steering ? pages.proxy('/live/steering.json', a.steering, map) : undefined;
process.stdout.write(`${JSON.stringify({ page: `${pages.url}/?src=${encodeURIComponent(master)}`, master, steering })}\n`);
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await pages.stop();
    process.exit(0);
  });
}
