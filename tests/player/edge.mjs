#!/usr/bin/env node
// One region's local edge (see lib/edge.mjs): a CloudFront stand-in running a Lambda@Edge handler.
//
//   node tests/player/edge.mjs --origin http://127.0.0.1:8081 --domain d1use1demo.cloudfront.net \
//     [--handler edge-lambda/dist/index.mjs[#handler]] [--event-type viewer-request|origin-response] \
//     [--port 0] [--host 127.0.0.1] [--ready-file FILE]
//
// Prints one JSON line when listening: {"url":"http://127.0.0.1:PORT","domain":"...","eventType":"..."}
// and one JSON line per request on stderr. SIGUSR1 kills the edge (the listener closes, viewers get
// connection refused), SIGUSR2 revives it on the same port, SIGTERM/SIGINT stop it.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { startEdge } from './lib/edge.mjs';

const { values: a } = parseArgs({
  options: {
    origin: { type: 'string' },
    domain: { type: 'string' },
    handler: { type: 'string' },
    'event-type': { type: 'string', default: 'viewer-request' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'ready-file': { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});
if (!a.origin || !a.domain) {
  console.error('edge.mjs: --origin and --domain are required');
  process.exit(2);
}
const edge = await startEdge({
  origin: a.origin,
  domain: a.domain,
  handler: a.handler ?? null,
  eventType: a['event-type'],
  port: Number(a.port),
  host: a.host,
  onLog: a.quiet ? undefined : (e) => process.stderr.write(`${JSON.stringify(e)}\n`),
});
const line = JSON.stringify({ url: edge.url, domain: edge.domain, eventType: a['event-type'] });
if (a['ready-file']) {
  fs.writeFileSync(`${a['ready-file']}.tmp`, `${line}\n`);
  fs.renameSync(`${a['ready-file']}.tmp`, a['ready-file']);
}
process.stdout.write(`${line}\n`);
process.on('SIGUSR1', () => edge.kill());
process.on('SIGUSR2', () => edge.revive());
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await edge.stop();
    process.exit(0);
  });
}
