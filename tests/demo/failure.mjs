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
// demo.json: written by tests/demo.sh (see tests/demo/chain.mjs, which reads every component).
// Exits 1 when a step is not seen within its bound (the timeline says which).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { chain, observe as observeOn, same, steadyProbes } from './chain.mjs';

const POLL_MS = 200;
const STEP_TIMEOUT_MS = 60_000;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { region: { type: 'string' } },
});
const cfg = JSON.parse(fs.readFileSync(positionals[0], 'utf8'));
const c = chain(cfg);
const { instanceConditions, distroOpen, steeringPriority, masterPathways, edgeAnswer, cond, all, control } = c;

const say = (s) => process.stderr.write(`${s}\n`);
const observe = (t0, probes, timeoutMs = STEP_TIMEOUT_MS) => observeOn(t0, probes, { timeoutMs, pollMs: POLL_MS, say });

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

// 1. Steady state: every region healthy, open, in the table, in the steering manifest and the
// master, and its edge passing requests through.
say('Waiting for the steady state (every region healthy, open and published; up to 3 min)...');
const ready = await observe(Date.now(), steadyProbes(c), 180_000);
if (ready.some((s) => s.ms === null)) {
  say('The demo did not reach its steady state; see the logs printed above.');
  process.exit(1);
}

// 2. The region to fail: the one the viewer watches, else the steering manifest's first pathway
// (where every new player starts).
const priority = await steeringPriority();
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
    const p = await steeringPriority();
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
    const p = await steeringPriority();
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
