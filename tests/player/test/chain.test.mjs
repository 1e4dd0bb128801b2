// A real player through the real operator chain: tests/demo.sh starts everything `make demo` runs
// (etcd + kube-apiserver, DynamoDB Local, moto, the simulated three-region event with real media
// and 2 s segments, the operator with manifests/demo.yaml: automatic failover, the merged master
// and steering manifest published to moto's S3, the copilot deployed to moto's Lambda; an edge per
// region running that deployed zip on viewer-request; the page server mapping the CloudFront
// domains to the edges). hls.js in Chromium plays the master the operator published while a
// region fails:
//   patch    `kubectl patch streaminstance ... distroOpen=false` (a person closes the region)
//   freeze   the region's origin stops advancing (detection -> automatic close -> copilot 404s)
//   refuse   the region's origin refuses connections (its edge answers 502; detection -> close)
// each with content steering on and off (the ClusteredStream's spec.steering.enabled, patched).
// One environment and operator serve every run. Per run it asserts that playback continues and
// that the player's requests leave the failed region, and it records, in ms from the fault, when
// each stage was seen on the real component: the operator's `instance health changed` log line
// (detection), the state-table item (DynamoDB Local), the steering manifest in S3, the copilot's
// 404 at the region's edge, and the player's last request to the region and first segment from
// another. Then it heals the region and checks the reopen: players are offered it again (steering
// manifest, or the master without steering) only once the copilot lets it through, no sooner than
// tableCacheSeconds after the table write. Artefacts in target/player/<stamp>/chain-*/.
//
//   PLAYER_RUNS=N                    repeat each scenario N times and print p50/p90/max (make player-chain-bench)
//   PLAYER_CHAIN_STEERING=on,off     steering variants (default both)
//   PLAYER_CHAIN_SCENARIOS=patch,freeze,refuse
//   PLAYER_CHAIN=0                   skip this file
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chain, observe, steadyProbes } from '../../demo/chain.mjs';
import {
  REPO, artefactRoot, currentTimeAt, launchBrowser, longestStall, openPlayer, summarize, waitFor,
} from '../lib/harness.mjs';

const RUNS = Math.max(1, Number(process.env.PLAYER_RUNS ?? 1));
const MODES = (process.env.PLAYER_CHAIN_STEERING ?? 'on,off').split(',').filter(Boolean);
const SCENARIOS = (process.env.PLAYER_CHAIN_SCENARIOS ?? 'patch,freeze,refuse').split(',').filter(Boolean);
const STATE_DIR = process.env.CVS_PLAYER_CHAIN_STATE_DIR ?? path.join(REPO, '.cvs-env-player');
// Playback must go on: the media element's clock advances this far past the fault...
const ADVANCE_AFTER_FAULT_S = 10;
// ...never stands still longer than this (ms) from 1 s before the fault on...
const STALL_BOUND_MS = Number(process.env.PLAYER_CHAIN_STALL_BOUND_MS ?? 2000);
// ...and the buffer ahead of it never runs dry (every 250 ms sample from the fault on).
// The demo's hold-down (10 s) is shortened for these runs so a healed region reopens sooner; it
// plays no part in the failover measured.
const HOLD_DOWN_S = 4;
const SWITCH_TIMEOUT_MS = 60_000;
// The copilot's tableCacheSeconds in manifests/demo.yaml: how long after a reopen the operator
// waits before offering the region to players again.
const REOPEN_SETTLE_MS = 2000;

const root = artefactRoot();
const results = [];
const enabled = process.env.PLAYER_CHAIN !== '0';

describe('player through the operator chain (tests/demo.sh)', { skip: !enabled && 'PLAYER_CHAIN=0' }, () => {
  let demo;
  let demoExit;
  let c;
  let cfg;
  let browser;
  const log = path.join(root, 'demo.log');

  before(async () => {
    const demoJson = path.join(STATE_DIR, 'demo', 'demo.json');
    fs.rmSync(demoJson, { force: true });
    const out = fs.openSync(log, 'a');
    // Its own session (detached): TERM to it runs its cleanup, which stops every process it
    // started and the environment.
    demo = spawn(path.join(REPO, 'tests', 'demo.sh'), ['--keep-running', '--no-viewer'], {
      cwd: REPO,
      env: { ...process.env, CVS_DEMO_STATE_DIR: STATE_DIR },
      stdio: ['ignore', out, out],
      detached: true,
    });
    demoExit = new Promise((resolve) => demo.once('exit', resolve));
    process.once('exit', () => { try { process.kill(demo.pid, 'SIGTERM'); } catch { /* gone */ } });
    // The first run builds the control plane and installs the emulators: minutes.
    await waitFor(() => {
      if (demo.exitCode !== null) throw new Error(`tests/demo.sh exited ${demo.exitCode}; see ${log}`);
      return fs.existsSync(demoJson);
    }, 20 * 60_000, `tests/demo.sh to start the chain (log: ${log})`, 500);
    cfg = JSON.parse(fs.readFileSync(demoJson, 'utf8'));
    c = chain(cfg);
    await c.kubectl(['patch', 'clusteredstream', cfg.cluster, '-n', cfg.namespace, '--type', 'merge',
      '-p', JSON.stringify({ spec: { failover: { holdDownSeconds: HOLD_DOWN_S } } })]);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    if (demo && demo.exitCode === null) {
      process.kill(demo.pid, 'SIGTERM');
      await Promise.race([demoExit, sleep(60_000)]);
      if (demo.exitCode === null) {
        try { process.kill(-demo.pid, 'SIGKILL'); } catch { /* gone */ }
      }
    }
    if (results.length) {
      fs.writeFileSync(path.join(root, 'results.json'), JSON.stringify(results, null, 1));
      const lines = summarize(
        `player through the operator chain (hls.js, TD 2 s, tableCacheSeconds 2, steering TTL 2 s; ${RUNS} run(s) each; ms from the fault; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; artefacts ${root})`,
        results, ['steering', 'scenario'],
        ['detectionMs', 'tableMs', 'steeringMs', 'copilot404Ms', 'lastToFailedMs', 'firstOtherSegmentMs', 'stallMs', 'reopenLagMs'],
      );
      const failed = results.filter((r) => !r.ok);
      lines.push(`runs failing an assertion: ${failed.length} of ${results.length}${failed.map((r) => ` (${r.steering} ${r.scenario} ${r.run})`).join('')}`);
      console.log(lines.join('\n'));
      fs.writeFileSync(path.join(root, 'summary.txt'), `${lines.join('\n')}\n`);
    }
  });

  const regionOf = (url) => cfg.instances.find((i) => url.startsWith(`${i.edge}/`))?.region ?? 'page';

  /** Sets spec.steering.enabled and waits until the master in S3 says so. */
  async function setSteering(on) {
    await c.kubectl(['patch', 'clusteredstream', cfg.cluster, '-n', cfg.namespace, '--type', 'merge',
      '-p', JSON.stringify({ spec: { steering: { enabled: on } } })]);
    await waitFor(async () => (await c.master())?.steering === on, 60_000, `the published master with steering ${on ? 'on' : 'off'}`, 300);
  }

  const patchOpen = (inst, open) => c.kubectl(['patch', 'streaminstance', inst.name, '-n', cfg.namespace, '--type', 'merge',
    '-p', JSON.stringify({ spec: { distroOpen: open } })]);
  const faults = {
    patch: { fault: (inst) => patchOpen(inst, false), heal: (inst) => patchOpen(inst, true), detects: false },
    freeze: { fault: (inst) => c.control('POST', { kind: 'freeze', region: inst.region }), heal: () => c.control('DELETE'), detects: true },
    refuse: { fault: (inst) => c.control('POST', { kind: 'refuse', region: inst.region }), heal: () => c.control('DELETE'), detects: true },
  };

  for (const mode of MODES) {
    const steering = mode === 'on';
    for (const scenario of SCENARIOS) {
      test(`steering ${mode}, ${scenario}: playback continues and the player leaves the region`, async () => {
        await setSteering(steering);
        // Every run is made even when one fails (a benchmark keeps its count); the test then
        // fails with each failure.
        const failures = [];
        for (let run = 1; run <= RUNS; run++) {
          try {
            await chainRun(`chain-${steering ? 'steering' : 'nosteering'}-${scenario}-${run}`, faults[scenario], steering, { steering: mode, scenario, run });
          } catch (e) {
            failures.push(`run ${run}: ${e.message}`);
          }
        }
        assert.deepEqual(failures, [], `${failures.length} of ${RUNS} run(s) failed`);
      });
    }
  }

  /** One run; its measurements go into `results` (with `meta`, and ok: false when it failed). */
  async function chainRun(label, sc, steering, meta) {
    const dir = path.join(root, label);
    const steady = await observe(Date.now(), steadyProbes(c, { steering }), { timeoutMs: 120_000, pollMs: 500 });
    assert.ok(steady.every((s) => s.ms !== null), `no steady state before the run: ${JSON.stringify(steady)}`);
    const p = await openPlayer(browser, cfg.page, `${cfg.page}/live/master.m3u8`, dir, regionOf);
    let inst = null;
    let failedRegion = null;
    let t0 = null;
    try {
      await waitFor(async () => (await p.state())?.samples.at(-1)?.currentTime >= 4, 60_000, 'steady playback');
      const failed = p.requests.filter((r) => r.kind === 'segment' && r.region !== 'page').at(-1).region;
      inst = c.instance(failed);
      failedRegion = failed;
      t0 = Date.now();
      await sc.fault(inst);
      // Each stage, read on its own component every 100 ms (the operator's log: its timestamp).
      const stagesP = observe(t0, [
        ...(sc.detects ? [['detectionMs', () => {
          const at = c.healthChangeLogged(`${cfg.namespace}/${inst.name}`, false, t0 - 1000);
          return at && { at };
        }]] : []),
        ['tableMs', async () => (await c.distroOpen(inst.domain)) === false],
        ...(steering ? [['steeringMs', async () => {
          const pr = await c.steeringPriority();
          return pr && !pr.includes(failed);
        }]] : []),
        ['copilot404Ms', async () => {
          const a = await c.edgeAnswer(inst);
          return a.status === 404 && a.copilot === 'closed';
        }],
      ], { timeoutMs: SWITCH_TIMEOUT_MS, pollMs: 100 });
      const switched = await waitFor(() => p.requests.find((r) => r.t >= t0 && r.kind === 'segment' && r.region !== failed && r.region !== 'page' && r.status === 200), SWITCH_TIMEOUT_MS, 'a segment from another region');
      const ct0 = currentTimeAt((await p.state()).samples, t0);
      await waitFor(async () => (await p.state()).samples.at(-1).currentTime >= ct0 + ADVANCE_AFTER_FAULT_S, SWITCH_TIMEOUT_MS, `currentTime to advance ${ADVANCE_AFTER_FAULT_S} s past the fault`);
      const stages = await stagesP;
      const st = await p.state();
      const toFailed = p.requests.filter((r) => r.t >= t0 && r.region === failed);
      const m = {
        failed,
        to: switched.region,
        ...Object.fromEntries(stages.map((s) => [s.step, s.ms])),
        lastToFailedMs: toFailed.length ? toFailed.at(-1).t - t0 : 0,
        firstOtherSegmentMs: switched.t - t0,
        requestsToFailed: toFailed.length,
        notFoundFromFailed: toFailed.filter((r) => r.status === 404).length,
        stallMs: longestStall(st.samples, t0 - 1000),
        minAheadS: Math.min(...st.samples.filter((s) => s.t >= t0).map((s) => s.ahead)),
        errors: st.errors.filter((e) => e.t >= t0).map((e) => `${e.details}${e.fatal ? ' (fatal)' : ''}${e.code ? ` ${e.code}` : ''}`),
      };
      fs.writeFileSync(path.join(dir, 'metrics.json'), JSON.stringify({ ...m, stages }, null, 1));
      const row = { ...meta, ...m, ok: false };
      results.push(row);
      assert.equal(st.fatal, null, `fatal error ${JSON.stringify(st.fatal)}`);
      const missed = stages.filter((s) => s.ms === null).map((s) => s.step);
      assert.deepEqual(missed, [], `stages not seen within ${SWITCH_TIMEOUT_MS / 1000} s`);
      assert.ok(m.stallMs <= STALL_BOUND_MS, `playback stood still for ${m.stallMs} ms (bound ${STALL_BOUND_MS} ms)`);
      assert.ok(m.minAheadS > 0, `the buffer ran dry (least buffer ahead ${m.minAheadS} s)`);
      const lateOk = p.requests.filter((r) => r.t >= switched.t + 1000 && r.region === failed && r.kind === 'segment' && r.status === 200);
      assert.equal(lateOk.length, 0, 'no segment served by the failed region after the switch');

      // The reopen: players are offered the region again (steering manifest, or the master when
      // steering is off) only once the copilot's cache lets it through, so none is sent to 404s.
      // A late viewer still asking the closed region (as players on an old master do) keeps the
      // copilot's cached "closed" fresh until the reopen.
      const healed = inst;
      inst = null;
      let reopened = false;
      const lateViewer = (async () => {
        while (!reopened) {
          await c.edgeAnswer(healed).catch(() => null);
          await sleep(250);
        }
      })();
      const t1 = Date.now();
      await sc.heal(healed);
      const offeredBack = async () => (steering ? (await c.steeringPriority())?.includes(failed) : (await c.masterRegions())?.includes(failed));
      const reopen = await observe(t1, [
        ['tableOpenMs', async () => (await c.distroOpen(healed.domain)) === true],
        ['offeredAgainMs', async () => {
          if (!(await offeredBack())) return null;
          // The copilot's answer at the moment players are sent back.
          const a = await c.edgeAnswer(healed);
          return `edge ${a.status}${a.copilot ? ` ${a.copilot}` : ''}`;
        }],
      ], { timeoutMs: SWITCH_TIMEOUT_MS, pollMs: 100 });
      reopened = true;
      await lateViewer;
      const r = Object.fromEntries(reopen.map((x) => [x.step, x]));
      m.reopenLagMs = r.offeredAgainMs.ms !== null && r.tableOpenMs.ms !== null ? r.offeredAgainMs.ms - r.tableOpenMs.ms : null;
      m.edgeWhenOfferedAgain = r.offeredAgainMs.detail;
      Object.assign(row, { reopenLagMs: m.reopenLagMs, edgeWhenOfferedAgain: m.edgeWhenOfferedAgain });
      fs.writeFileSync(path.join(dir, 'metrics.json'), JSON.stringify({ ...m, stages, reopen }, null, 1));
      assert.ok(reopen.every((x) => x.ms !== null), `reopen not seen: ${JSON.stringify(reopen)}`);
      assert.equal(m.edgeWhenOfferedAgain, 'edge 200', 'the copilot lets the region through when players are offered it again');
      // Offered no sooner than tableCacheSeconds (2 s) after the table says open, less the two
      // 100 ms polls' slack.
      assert.ok(m.reopenLagMs >= REOPEN_SETTLE_MS - 500, `offered again ${m.reopenLagMs} ms after the table write (copilot cache ${REOPEN_SETTLE_MS} ms)`);
      row.ok = true;
      return m;
    } finally {
      await p.finish({ label, failed: failedRegion, t0 });
      if (inst) await sc.heal(inst);
    }
  }
});
