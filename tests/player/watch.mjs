#!/usr/bin/env node
// A headless viewer for the demo: plays a master playlist with hls.js in Debian's Chromium and
// prints a JSON line on stdout whenever the region it fetches segments from changes, when playback
// stands still longer than 1 s, and on hls.js errors; on SIGINT/SIGTERM (or after --seconds) it
// writes its artefacts (requests, console, samples, screenshot) and exits.
//
//   node tests/player/watch.mjs --master http://127.0.0.1:8090/live/master.m3u8 \
//     --page http://127.0.0.1:8090 --region us-east-1=http://127.0.0.1:9081 \
//     --region eu-west-1=http://127.0.0.1:9082 [--out DIR] [--seconds N]
//
// Lines: {"t":<unix ms>,"event":"region","region":"eu-west-1","from":"us-east-1","url":"..."}
//        {"t":...,"event":"stall","ms":1500}   {"t":...,"event":"error","details":"fragLoadError"}
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { TARGET, launchBrowser, openPlayer } from './lib/harness.mjs';

const { values: a } = parseArgs({
  options: {
    master: { type: 'string' },
    page: { type: 'string' },
    region: { type: 'string', multiple: true, default: [] },
    out: { type: 'string' },
    seconds: { type: 'string' },
  },
});
if (!a.master || !a.page) {
  console.error('watch.mjs: --master and --page are required');
  process.exit(2);
}
const regions = a.region.map((r) => {
  const i = r.indexOf('=');
  return [r.slice(0, i), r.slice(i + 1).replace(/\/$/, '')];
});
const regionOf = (url) => regions.find(([, base]) => url.startsWith(`${base}/`))?.[0] ?? 'other';
const out = a.out ?? path.join(TARGET, 'player', `watch-${new Date().toISOString().replace(/[:.]/g, '-')}`);
const emit = (o) => process.stdout.write(`${JSON.stringify({ t: Date.now(), ...o })}\n`);

// Playwright's own SIGINT/SIGTERM/SIGHUP handlers would close the browser before stop() takes the
// screenshot; stop() closes it.
const browser = await launchBrowser({ handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false });
const p = await openPlayer(browser, a.page.replace(/\/$/, ''), a.master, out, regionOf);
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await p.finish({ master: a.master });
  await browser.close();
  emit({ event: 'stopped', artefacts: out });
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
const until = a.seconds ? Date.now() + Number(a.seconds) * 1000 : Infinity;
let region = null;
let seen = 0;
let errorsSeen = 0;
let still = null;
let lastTime = -1;
while (!stopping && Date.now() < until) {
  for (; seen < p.requests.length; seen++) {
    const r = p.requests[seen];
    if (r.kind === 'segment' && r.region !== region) {
      emit({ event: 'region', region: r.region, from: region, url: r.url });
      region = r.region;
    }
  }
  const st = await p.state().catch(() => null);
  if (st) {
    for (; errorsSeen < st.errors.length; errorsSeen++) emit({ event: 'error', ...st.errors[errorsSeen] });
    const s = st.samples.at(-1);
    if (s && s.currentTime === lastTime) {
      still ??= s.t;
    } else {
      if (still && s && s.t - still > 1000) emit({ event: 'stall', ms: s.t - still });
      still = null;
    }
    if (s) lastTime = s.currentTime;
  }
  await sleep(250);
}
await stop();
