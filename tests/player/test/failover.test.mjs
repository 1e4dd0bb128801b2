// A real player keeps watching while a region fails: hls.js in Debian's headless Chromium plays a
// multi-region master with redundant variants (each region's copy of each bitrate, with identical
// attributes, on that region's edge) of a simulated live event with real H.264/AAC media. A
// region's edge is killed (connection refused) or its Lambda@Edge handler answers 404 (a closed
// region, as the copilot does); playback must continue and the player's requests move to another
// region. Artefacts (requests, console, samples, screenshot) go to target/player/<stamp>/.
//
//   PLAYER_RUNS=N   repeat each fault scenario N times and print p50/p90/max (default 1)
//   PLAYER_FORMATS=ts,fmp4   segment containers to run (default both)
//   PLAYER_STEERING=off,on   content steering variants (default: both for ts, off for fmp4)
//   PLAYER_SCENARIOS=kill,close404,origin502,freezeThenClose,steerAway   which faults
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEdge } from '../lib/edge.mjs';
import * as switchable from '../handlers/switchable.mjs';
import {
  artefactRoot, buildRedundantMaster, currentTimeAt, launchBrowser, longestStall, makeMedia,
  openPlayer, request, startPageServer, startSim, summarize, waitFor,
} from '../lib/harness.mjs';

const TD = 1; // segment duration, seconds
const REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-1'];
const DOMAIN = { 'us-east-1': 'd1use1.cloudfront.net', 'eu-west-1': 'd2euw1.cloudfront.net', 'ap-southeast-1': 'd3apse1.cloudfront.net' };
const RUNS = Math.max(1, Number(process.env.PLAYER_RUNS ?? 1));
const FORMATS = (process.env.PLAYER_FORMATS ?? 'ts,fmp4').split(',').filter(Boolean);
// Playback must go on: the media element's clock advances at least this far past the fault...
const ADVANCE_AFTER_FAULT_S = 6;
// ...and never stands still longer than this (ms) around the failover.
const STALL_BOUND_MS = Number(process.env.PLAYER_STALL_BOUND_MS ?? 3000);
const SWITCH_TIMEOUT_MS = 45_000;
// freezeThenClose: the delay from the freeze to the close (1.5 x TD staleness + a probe interval).
const CLOSE_AFTER_MS = 2000;

const root = artefactRoot();
const results = [];

// Content steering: off (redundant variants only, hls.js's own pathway fallback) or on (PATHWAY-ID
// per region and a steering manifest with a 1 s TTL that the test rewrites). Default: both for
// MPEG-TS, off for fMP4.
const COMBOS = process.env.PLAYER_STEERING
  ? FORMATS.flatMap((f) => process.env.PLAYER_STEERING.split(',').map((st) => [f, st === 'on']))
  : FORMATS.flatMap((f) => (f === 'ts' ? [[f, false], [f, true]] : [[f, false]]));

for (const [format, steering] of COMBOS) {
  const variant = `${format}${steering ? '-steering' : ''}`;
  describe(`player over ${format} segments, content steering ${steering ? 'on' : 'off'}`, () => {
    let sim;
    let browser;
    let pages;
    const edges = {};
    let masterUrl;

    /** Publishes the steering manifest with this PATHWAY-PRIORITY; returns its URL. */
    const setPriority = (priority) =>
      pages.put(`/live/${variant}/steering.json`, JSON.stringify({ VERSION: 1, TTL: 1, 'PATHWAY-PRIORITY': priority }), 'application/json');

    const regionOf = (url) => {
      for (const [r, e] of Object.entries(edges)) if (url.startsWith(`${e.url}/`)) return r;
      return 'page';
    };

    before(async () => {
      const media = makeMedia(TD);
      sim = await startSim({ regions: REGIONS, td: TD, media, format, logFile: path.join(root, `sim-${format}.log`) });
      for (const r of REGIONS) {
        edges[r] = await startEdge({ origin: sim.regions[r], domain: DOMAIN[r], handler: switchable.handler, eventType: 'viewer-request' });
      }
      pages = await startPageServer();
      const own = await request('GET', `${sim.regions[REGIONS[0]]}/s0001/master.m3u8`);
      let steer = null;
      if (steering) {
        steer = { serverUri: setPriority(REGIONS), pathways: REGIONS };
      }
      const master = buildRedundantMaster(own.body, 's0001', REGIONS.map((r) => ({ region: r, url: edges[r].url })), steer);
      fs.writeFileSync(path.join(root, `master-${variant}.m3u8`), master);
      masterUrl = pages.put(`/live/${variant}/master.m3u8`, master);
      browser = await launchBrowser();
    });

    after(async () => {
      await browser?.close();
      for (const e of Object.values(edges)) await e.stop();
      await pages?.stop();
      await sim?.stop();
    });

    test('plays the live event from the first region, with real media', async () => {
      const dir = path.join(root, `${variant}-steady`);
      const p = await openPlayer(browser, pages.url, masterUrl, dir, regionOf);
      try {
        await waitFor(async () => (await p.state())?.samples.at(-1)?.currentTime >= 1, 30_000, 'playback to start');
        const t0 = Date.now();
        await sleep(5000);
        const st = await p.state();
        const advanced = st.samples.at(-1).currentTime - currentTimeAt(st.samples, t0);
        assert.ok(advanced >= 4, `currentTime advanced ${advanced.toFixed(2)} s in 5 s`);
        assert.equal(st.fatal, null, `fatal error ${JSON.stringify(st.fatal)}`);
        const segs = p.requests.filter((r) => r.kind === 'segment');
        assert.ok(segs.length > 0);
        assert.deepEqual([...new Set(segs.map((r) => r.region))], [REGIONS[0]], 'every segment from the first region');
      } finally {
        await p.finish({ format });
      }
    });

    const faults = new Map();
    const withoutRegion = (r) => [...REGIONS.filter((x) => x !== r), r];
    const scenarios = {
      // The region's edge is unreachable: connection refused.
      kill: { fault: (r) => edges[r].kill(), heal: (r) => edges[r].revive() },
      // The region is closed: its edge function answers 404 to everything (the copilot's answer).
      close404: { fault: (r) => switchable.setClosed(DOMAIN[r], true), heal: (r) => switchable.setClosed(DOMAIN[r], false) },
      // The region's origin refuses connections behind a live edge, which answers 502.
      origin502: {
        fault: async (r) => faults.set(r, (await sim.fault({ kind: 'refuse', region: r })).id),
        heal: async () => { await sim.healAll(); },
        stallBoundMs: Number(process.env.PLAYER_502_STALL_BOUND_MS ?? 8000),
      },
      // The region's origin freezes (playlists stop advancing, no error); CLOSE_AFTER_MS later the
      // region is closed (what the operator's detection, table write and copilot do) and its edge
      // answers 404.
      freezeThenClose: {
        fault: async (r) => {
          await sim.fault({ kind: 'freeze', region: r });
          setTimeout(() => switchable.setClosed(DOMAIN[r], true), CLOSE_AFTER_MS);
        },
        heal: async (r) => { switchable.setClosed(DOMAIN[r], false); await sim.healAll(); },
      },
    };
    if (steering) {
      // Nothing fails: the steering manifest moves the region to the end of PATHWAY-PRIORITY, as
      // the operator publishes it for a closed region.
      scenarios.steerAway = { fault: (r) => setPriority(withoutRegion(r)), heal: () => setPriority(REGIONS) };
      // A close as the operator does it with steering: the copilot's 404s and the manifest at once.
      scenarios.close404 = {
        fault: (r) => { switchable.setClosed(DOMAIN[r], true); setPriority(withoutRegion(r)); },
        heal: (r) => { switchable.setClosed(DOMAIN[r], false); setPriority(REGIONS); },
      };
    }
    // `make test` runs every scenario over MPEG-TS and a few over the others; PLAYER_RUNS > 1
    // (make player-bench) runs all of them, PLAYER_SCENARIOS=a,b the ones named.
    const quick = { 'ts': null, 'ts-steering': ['steerAway', 'close404'], 'fmp4': ['kill', 'close404'] };
    const only = process.env.PLAYER_SCENARIOS?.split(',') ?? (RUNS > 1 ? null : quick[variant] ?? null);
    for (const [name, sc] of Object.entries(scenarios)) {
      if (only && !only.includes(name)) continue;
      test(`${name}: playback continues and requests move to another region`, async () => {
        for (let run = 1; run <= RUNS; run++) {
          const m = await failoverRun(`${variant}-${name}-${run}`, sc);
          results.push({ format: variant, scenario: name, run, ...m });
        }
      });
    }

    async function failoverRun(label, sc) {
      const dir = path.join(root, label);
      const p = await openPlayer(browser, pages.url, masterUrl, dir, regionOf);
      let failed = null;
      let t0 = null;
      try {
        await waitFor(async () => (await p.state())?.samples.at(-1)?.currentTime >= 4, 30_000, 'steady playback');
        failed = p.requests.filter((r) => r.kind === 'segment').at(-1).region;
        t0 = Date.now();
        await sc.fault(failed);
        const switched = await waitFor(() => p.requests.find((r) => r.t >= t0 && r.kind === 'segment' && r.region !== failed && r.region !== 'page' && r.status === 200), SWITCH_TIMEOUT_MS, 'a segment from another region');
        const ct0 = currentTimeAt((await p.state()).samples, t0);
        await waitFor(async () => (await p.state()).samples.at(-1).currentTime >= ct0 + ADVANCE_AFTER_FAULT_S, SWITCH_TIMEOUT_MS, `currentTime to advance ${ADVANCE_AFTER_FAULT_S} s past the fault`);
        await sleep(2000); // see whether the player keeps coming back to the failed region
        const st = await p.state();
        const toFailed = p.requests.filter((r) => r.t >= t0 && r.region === failed);
        const m = {
          failed,
          to: switched.region,
          lastToFailedMs: toFailed.length ? toFailed.at(-1).t - t0 : 0,
          firstOtherSegmentMs: switched.t - t0,
          requestsToFailed: toFailed.length,
          stallMs: longestStall(st.samples, t0 - 1000),
          minAheadS: Math.min(...st.samples.filter((s) => s.t >= t0).map((s) => s.ahead)),
          errors: st.errors.filter((e) => e.t >= t0).map((e) => `${e.details}${e.fatal ? ' (fatal)' : ''}${e.action !== undefined ? ` action=${e.action}` : ''}`),
        };
        fs.writeFileSync(path.join(dir, 'metrics.json'), JSON.stringify(m, null, 1));
        assert.equal(st.fatal, null, `fatal error ${JSON.stringify(st.fatal)}`);
        const bound = sc.stallBoundMs ?? STALL_BOUND_MS;
        assert.ok(m.stallMs <= bound, `playback stood still for ${m.stallMs} ms (bound ${bound} ms)`);
        const lateOk = p.requests.filter((r) => r.t >= switched.t + 1000 && r.region === failed && r.kind === 'segment' && r.status === 200);
        assert.equal(lateOk.length, 0, 'no segment served by the failed region after the switch');
        return m;
      } finally {
        await p.finish({ label, failed, t0 });
        if (failed) await sc.heal(failed);
      }
    }
  });
}

after(() => {
  if (!results.length) return;
  fs.writeFileSync(path.join(root, 'results.json'), JSON.stringify(results, null, 1));
  const lines = summarize(`player failover (hls.js, TD ${TD} s, ${RUNS} run(s) each; ms from the fault; artefacts ${root})`,
    results, ['format', 'scenario'], ['lastToFailedMs', 'firstOtherSegmentMs', 'stallMs']);
  console.log(lines.join('\n'));
  fs.writeFileSync(path.join(root, 'summary.txt'), `${lines.join('\n')}\n`);
});
