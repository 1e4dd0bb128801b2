#!/usr/bin/env node
// The demo's scripted failure (tests/demo.sh runs it): freezes one region of the simulated live
// event, then heals it, and prints when each part of the system showed the change, in ms from the
// fault. Every step is observed on the real thing, by polling every POLL_MS:
//   kubectl get streaminstances (Healthy, Open), DynamoDB Local GetItem (distro_open), the
//   steering manifest and master in moto's S3 and the operator's /steering endpoint, the region's
//   local edge running the copilot (a media playlist: 404 from the copilot, or 200), and, when the
//   headless viewer runs, the first segment the player fetched from another region.
//
//   node tests/demo/failure.mjs STATE_DIR/demo.json [--region R]
//
// demo.json (written by tests/demo.sh): {namespace, cluster, controlUrl, operatorUrl, s3Endpoint,
// buckets, masterKey, steeringKey, table, kubectl, viewerLog?, instances: [{name, region, domain,
// edge}]}. Exits 1 when a step is not seen within its bound (the timeline says which).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 200;
const STEP_TIMEOUT_MS = 60_000;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { region: { type: 'string' } },
});
const cfg = JSON.parse(fs.readFileSync(positionals[0], 'utf8'));
const requireEdge = createRequire(path.join(REPO, 'edge-lambda', 'package.json'));
const ddbSdk = requireEdge('@aws-sdk/client-dynamodb');
const ddb = new ddbSdk.DynamoDBClient({ region: 'us-east-1', maxAttempts: 1 });

const say = (s) => process.stderr.write(`${s}\n`);

function kubectl(args) {
  return new Promise((resolve, reject) => {
    execFile(cfg.kubectl, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout)));
  });
}

/** {name: {Healthy: {status, reason}, Open: {...}}} of every StreamInstance in the namespace. */
async function instanceConditions() {
  const list = JSON.parse(await kubectl(['get', 'streaminstances', '-n', cfg.namespace, '-o', 'json']));
  const out = {};
  for (const item of list.items) {
    const conds = {};
    for (const c of item.status?.conditions ?? []) conds[c.type] = { status: c.status, reason: c.reason };
    out[item.metadata.name] = conds;
  }
  return out;
}

async function distroOpen(domain) {
  const r = await ddb.send(new ddbSdk.GetItemCommand({ TableName: cfg.table, Key: { domain: { S: domain } }, ConsistentRead: true }));
  const v = r.Item?.distro_open?.BOOL;
  return v === undefined ? null : v;
}

async function getText(url) {
  const r = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(3000) });
  return { status: r.status, body: await r.text(), headers: r.headers };
}

const s3Url = (bucket, key) => `${cfg.s3Endpoint}/${bucket}/${key}`;

async function steeringPriority(url) {
  const r = await getText(url);
  if (r.status !== 200) return null;
  return JSON.parse(r.body)['PATHWAY-PRIORITY'] ?? null;
}

/** The PATHWAY-IDs of the variants of the master in every bucket, or null when they differ. */
async function masterPathways() {
  let seen = null;
  for (const bucket of cfg.buckets) {
    const r = await getText(s3Url(bucket, cfg.masterKey));
    if (r.status !== 200) return null;
    const ids = [...new Set([...r.body.matchAll(/#EXT-X-STREAM-INF:.*PATHWAY-ID="([^"]+)"/g)].map((m) => m[1]))].sort();
    const key = ids.join(',');
    if (seen !== null && seen !== key) return null;
    seen = key;
  }
  return seen === null ? null : seen.split(',').filter(Boolean);
}

/** The status of a media playlist through the region's edge, and whether the copilot answered. */
async function edgeAnswer(inst) {
  const r = await getText(`${inst.edge}/s0001/720p/index.m3u8`);
  return { status: r.status, copilot: r.headers.get('x-cvs-copilot') };
}

/** The viewer's segment requests after `since` (from watch.mjs's JSON lines), if it runs. */
function viewerSwitch(since, from) {
  if (!cfg.viewerLog || !fs.existsSync(cfg.viewerLog)) return null;
  for (const line of fs.readFileSync(cfg.viewerLog, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (e.event === 'region' && e.t >= since && e.region !== from) return e;
  }
  return null;
}

function viewerRegion() {
  if (!cfg.viewerLog || !fs.existsSync(cfg.viewerLog)) return null;
  let region = null;
  for (const line of fs.readFileSync(cfg.viewerLog, 'utf8').split('\n')) {
    try {
      const e = JSON.parse(line);
      if (e.event === 'region') region = e.region;
    } catch {
      // a partial line
    }
  }
  return region;
}

/**
 * Polls every probe (name -> async () => truthy detail | falsy) until each is true once, from
 * `t0`. Returns [{step, ms, detail}] in the order seen; a probe not seen gets ms = null.
 */
async function observe(t0, probes, timeoutMs = STEP_TIMEOUT_MS) {
  const seen = [];
  await Promise.all(
    probes.map(async ([step, probe]) => {
      const until = t0 + timeoutMs;
      while (Date.now() < until) {
        const at = Date.now();
        let v = null;
        try {
          v = await probe();
        } catch {
          v = null;
        }
        if (v) {
          seen.push({ step, ms: at - t0, detail: typeof v === 'string' ? v : '' });
          say(`  +${String(at - t0).padStart(6)} ms  ${step}${typeof v === 'string' ? ` (${v})` : ''}`);
          return;
        }
        await sleep(POLL_MS);
      }
      seen.push({ step, ms: null, detail: `not seen within ${timeoutMs / 1000} s` });
      say(`  not seen within ${timeoutMs / 1000} s: ${step}`);
    }),
  );
  const order = new Map(probes.map(([step], i) => [step, i]));
  return seen.sort((a, b) => (a.ms ?? Infinity) - (b.ms ?? Infinity) || order.get(a.step) - order.get(b.step));
}

async function control(method, body) {
  const r = await fetch(`${cfg.controlUrl}/faults`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (r.status >= 300) throw new Error(`${method} ${cfg.controlUrl}/faults: ${r.status} ${await r.text()}`);
}

const cond = (conds, name, type) => conds[name]?.[type] ?? {};
const all = cfg.instances.map((i) => i.region).sort();
const same = (a, b) => a && b && a.length === b.length && a.every((x, i) => x === b[i]);

// 1. Steady state: every region healthy, open, in the table, in the steering manifest and the
// master, and its edge passing requests through.
say('Waiting for the steady state (every region healthy, open and published; up to 3 min)...');
const ready = await observe(Date.now(), [
  ['all healthy and open', async () => {
    const c = await instanceConditions();
    return cfg.instances.every((i) => cond(c, i.name, 'Healthy').status === 'True' && cond(c, i.name, 'Open').status === 'True');
  }],
  ['table: all open', async () => (await Promise.all(cfg.instances.map((i) => distroOpen(i.domain)))).every((v) => v === true)],
  ['steering: all regions', async () => {
    const p = await steeringPriority(s3Url(cfg.buckets[0], cfg.steeringKey));
    return p && [...p].sort().join() === all.join();
  }],
  ['master: all regions', async () => same(await masterPathways(), all)],
  ['edges pass through', async () => (await Promise.all(cfg.instances.map(edgeAnswer))).every((a) => a.status === 200)],
], 180_000);
if (ready.some((s) => s.ms === null)) {
  say('The demo did not reach its steady state; see the logs printed above.');
  process.exit(1);
}

// 2. The region to fail: the one the viewer watches, else the steering manifest's first pathway
// (where every new player starts).
const priority = await steeringPriority(s3Url(cfg.buckets[0], cfg.steeringKey));
let region = opts.region ?? null;
if (!region && cfg.viewerLog) {
  for (let i = 0; i < 60 && !viewerRegion(); i++) await sleep(500);
  region = viewerRegion();
  if (region && !all.includes(region)) region = null;
}
region ??= priority[0];
const inst = cfg.instances.find((i) => i.region === region);
if (!inst) {
  say(`no instance in region ${region}`);
  process.exit(2);
}
const others = all.filter((r) => r !== region);
const operatorSteering = `${cfg.operatorUrl}/steering/${cfg.namespace}/${cfg.cluster}.json`;
const viewerFrom = viewerRegion();
await sleep(3000); // a few seconds of steady playback before the fault

say(`\nFreezing ${region} (every rendition stops advancing; no error at the origin)...`);
const t0 = Date.now();
await control('POST', { kind: 'freeze', region });
const fault = await observe(t0, [
  ['Healthy=False (kubectl)', async () => {
    const c = cond(await instanceConditions(), inst.name, 'Healthy');
    return c.status === 'False' && `reason ${c.reason}`;
  }],
  ['Open=False (kubectl)', async () => {
    const c = cond(await instanceConditions(), inst.name, 'Open');
    return c.status === 'False' && `reason ${c.reason}`;
  }],
  ['table item distro_open=false (DynamoDB GetItem)', async () => (await distroOpen(inst.domain)) === false],
  ['steering manifest in S3 drops the region', async () => {
    const p = await steeringPriority(s3Url(cfg.buckets[0], cfg.steeringKey));
    return p && !p.includes(region) && `PATHWAY-PRIORITY ${p.join(',')}`;
  }],
  ['steering manifest at the operator drops the region', async () => {
    const p = await steeringPriority(operatorSteering);
    return p && !p.includes(region);
  }],
  ['master in S3 (every bucket) omits the region', async () => same(await masterPathways(), others)],
  ['copilot answers 404 at the region\'s edge', async () => {
    const a = await edgeAnswer(inst);
    return a.status === 404 && a.copilot === 'closed' && 'X-Cvs-Copilot: closed';
  }],
  ...(cfg.viewerLog && viewerFrom === region
    ? [['player fetches a segment from another region', async () => {
        const e = viewerSwitch(t0, region);
        return e && e.region;
      }]]
    : []),
]);

say('\nThe region stays frozen 5 s more (the player plays from the others), then heals.');
await sleep(5000);
say(`Healing ${region}...`);
const t1 = Date.now();
await control('DELETE');
const heal = await observe(t1, [
  ['Healthy=True (kubectl)', async () => cond(await instanceConditions(), inst.name, 'Healthy').status === 'True'],
  ['Open=True (kubectl, after the hold-down)', async () => {
    const c = cond(await instanceConditions(), inst.name, 'Open');
    return c.status === 'True' && `reason ${c.reason}`;
  }],
  ['table item distro_open=true', async () => (await distroOpen(inst.domain)) === true],
  ['steering manifest in S3 lists the region again', async () => {
    const p = await steeringPriority(s3Url(cfg.buckets[0], cfg.steeringKey));
    return p && p.includes(region) && `PATHWAY-PRIORITY ${p.join(',')}`;
  }],
  ['master in S3 lists the region again', async () => same(await masterPathways(), all)],
  ['the region\'s edge answers 200 again', async () => (await edgeAnswer(inst)).status === 200],
]);

const rows = (list) => list.map((s) => `  ${s.ms === null ? '   missed' : `+${String(s.ms).padStart(6)} ms`}  ${s.step}${s.detail ? ` (${s.detail})` : ''}`);
const lines = [
  `Timeline (ms from the fault; each step polled every ${POLL_MS} ms on the real component, so ±${POLL_MS} ms)`,
  `freeze ${region} at ${new Date(t0).toISOString()}`,
  ...rows(fault),
  `heal ${region} at +${t1 - t0} ms; from the heal:`,
  ...rows(heal),
];
process.stdout.write(`\n${lines.join('\n')}\n`);
if (cfg.timelineFile) fs.writeFileSync(cfg.timelineFile, `${lines.join('\n')}\n`);
process.exit([...fault, ...heal].some((s) => s.ms === null) ? 1 : 0);
