// The player test harness: starts the HLS origin simulator with real media, a local edge per
// region, a page server, and hls.js in Debian's headless Chromium (playwright-core, no browser
// download), and records what the player did into an artefact directory.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const HERE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO = path.resolve(HERE, '..', '..');
export const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
export const CHROMIUM = process.env.CVS_CHROMIUM ?? '/usr/bin/chromium';

/** Directory for this run's artefacts: target/player/<stamp>/ (or $CVS_PLAYER_ARTEFACTS). */
export function artefactRoot() {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = process.env.CVS_PLAYER_ARTEFACTS ?? path.join(TARGET, 'player', stamp);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Makes (or reuses) the media for segments of `td` seconds; returns its directory. */
export function makeMedia(td) {
  return execFileSync(path.join(HERE, 'make-media.sh'), [String(td)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/**
 * Starts hls-origin-sim (built by tests/player/run.sh) serving real media.
 * Returns {control, regions: {name: baseUrl}, stop()}.
 */
export async function startSim({ regions, td, media, format = 'ts', streams = 1, renditions = 3, logFile }) {
  const bin = path.join(TARGET, 'debug', 'hls-origin-sim');
  const ready = path.join(path.dirname(logFile), `sim-${process.pid}-${Date.now()}.json`);
  const log = fs.openSync(logFile, 'a');
  const child = spawn(bin, [
    '--regions', regions.join(','), '--streams', String(streams), '--renditions', String(renditions),
    '--target-duration', String(td), '--media', media, '--segment-format', format,
    '--align-streams', '--ready-file', ready, '--threads', '2',
  ], { stdio: ['ignore', 'ignore', log] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; i < 100 && !fs.existsSync(ready); i++) {
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  if (!fs.existsSync(ready)) {
    child.kill('SIGKILL');
    throw new Error(`hls-origin-sim did not start; see ${logFile}`);
  }
  const line = JSON.parse(fs.readFileSync(ready, 'utf8'));
  fs.rmSync(ready, { force: true });
  return {
    control: line.control,
    regions: line.regions,
    async fault(body) {
      return postJson(`${line.control}/faults`, body);
    },
    async healAll() {
      return request('DELETE', `${line.control}/faults`);
    },
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode, body: data, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function postJson(url, obj) {
  const r = await request('POST', url, JSON.stringify(obj));
  if (r.status >= 300) throw new Error(`POST ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

/**
 * A multi-region master playlist with redundant variants, as the operator's merge produces:
 * every region's copy of each variant, with identical attributes and an absolute URI on that
 * region's edge; each region's audio group (`aud-<region>`) referenced by its own variants; region
 * blocks in the given order, so the first is the player's first (default) pathway. `master` is one
 * region's own master playlist (relative URIs). Pass `steering` ({serverUri, pathways}) for
 * content steering (PATHWAY-ID = region name).
 */
export function buildRedundantMaster(master, stream, edges, steering) {
  const lines = master.split('\n').map((l) => l.trim()).filter(Boolean);
  const head = ['#EXTM3U', '#EXT-X-VERSION:6', '#EXT-X-INDEPENDENT-SEGMENTS'];
  if (steering) head.push(`#EXT-X-CONTENT-STEERING:SERVER-URI="${steering.serverUri}",PATHWAY-ID="${edges[0].region}"`);
  const body = [];
  for (const { region, url } of edges) {
    const abs = (rel) => `${url}/${stream}/${rel}`;
    const group = `aud-${region}`;
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      if (l.startsWith('#EXT-X-MEDIA:')) {
        body.push(l.replace('GROUP-ID="aud"', `GROUP-ID="${group}"`).replace(/URI="([^"]+)"/, (_, u) => `URI="${abs(u)}"`));
      } else if (l.startsWith('#EXT-X-STREAM-INF:')) {
        let attrs = l.replace('AUDIO="aud"', `AUDIO="${group}"`);
        if (steering) attrs += `,PATHWAY-ID="${region}"`;
        body.push(attrs, abs(lines[i + 1]));
        i++;
      } else if (l.startsWith('#EXT-X-I-FRAME-STREAM-INF:')) {
        let attrs = l.replace(/URI="([^"]+)"/, (_, u) => `URI="${abs(u)}"`);
        if (steering) attrs += `,PATHWAY-ID="${region}"`;
        body.push(attrs);
      }
    }
  }
  return `${[...head, ...body].join('\n')}\n`;
}

/** Replaces `https://<domain>` and `http://<domain>` with the domain's local edge URL. */
export function mapDomains(text, map) {
  let out = text;
  for (const [domain, url] of Object.entries(map ?? {})) {
    out = out.replaceAll(`https://${domain}`, url).replaceAll(`http://${domain}`, url);
  }
  return out;
}

/**
 * Serves the player page (/), hls.js (/hls.js), in-memory documents set with put(path, body,
 * type) (the test's master playlist, a steering manifest) and documents proxied on every request
 * with proxy(path, upstreamUrl, domainMap) (the operator's published master and steering
 * manifest, with each CloudFront domain mapped to its local edge). Returns {url, put, proxy, stop}.
 */
export async function startPageServer({ port = 0, host = '127.0.0.1' } = {}) {
  const docs = new Map();
  const proxies = new Map();
  const hlsJs = fs.readFileSync(path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.js'));
  const page = fs.readFileSync(path.join(HERE, 'page', 'index.html'));
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-cache', 'access-control-allow-origin': '*' });
      res.end(body);
    };
    if (p === '/' || p === '/index.html') return send(200, 'text/html; charset=utf-8', page);
    if (p === '/hls.js') return send(200, 'text/javascript', hlsJs);
    const doc = docs.get(p);
    if (doc) return send(200, doc.type, doc.body);
    const px = proxies.get(p);
    if (px) {
      fetch(px.upstream, { cache: 'no-store' })
        .then(async (r) => send(r.status, r.headers.get('content-type') ?? 'application/octet-stream', mapDomains(await r.text(), px.map)))
        .catch((e) => send(502, 'text/plain', `upstream ${px.upstream}: ${e.message}\n`));
      return undefined;
    }
    return send(404, 'text/plain', 'not found\n');
  });
  await new Promise((r) => server.listen(port, host, r));
  const url = `http://${host}:${server.address().port}`;
  return {
    url,
    proxy(p, upstream, map) {
      proxies.set(p, { upstream, map });
      return `${url}${p}`;
    },
    put(p, body, type = 'application/vnd.apple.mpegurl') {
      docs.set(p, { body, type });
      return `${url}${p}`;
    },
    stop: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/**
 * Launches Debian's Chromium headless through playwright-core (never downloads a browser).
 * `options` are added to playwright's launch options (watch.mjs turns off its signal handlers so
 * it can take its screenshot before the browser closes).
 */
export async function launchBrowser(options = {}) {
  const { chromium } = await import('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run tests/player/run.sh, which installs it`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--autoplay-policy=no-user-gesture-required', '--no-sandbox', '--disable-gpu', '--mute-audio'],
    ...options,
  });
}

/**
 * Opens the player page on `masterUrl` and records every request (URL, start, end, status or
 * failure), the console, and (on finish) the page's samples and events and a screenshot, into
 * `dir`. `regionOf(url)` names the region a URL belongs to.
 */
export async function openPlayer(browser, pageUrl, masterUrl, dir, regionOf) {
  fs.mkdirSync(dir, { recursive: true });
  const context = await browser.newContext({ viewport: { width: 680, height: 440 } });
  const page = await context.newPage();
  const requests = [];
  const consoleLines = [];
  const byReq = new Map();
  page.on('console', (m) => consoleLines.push(`${new Date().toISOString()} ${m.type()} ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`${new Date().toISOString()} pageerror ${e.message}`));
  page.on('request', (r) => {
    const e = { t: Date.now(), url: r.url(), region: regionOf(r.url()), kind: kindOf(r.url()) };
    byReq.set(r, e);
    requests.push(e);
  });
  page.on('requestfinished', async (r) => {
    const e = byReq.get(r);
    if (!e) return;
    e.end = Date.now();
    try {
      e.status = (await r.response())?.status();
    } catch {
      e.status = null;
    }
  });
  page.on('requestfailed', (r) => {
    const e = byReq.get(r);
    if (!e) return;
    e.end = Date.now();
    e.failure = r.failure()?.errorText ?? 'failed';
  });
  await page.goto(`${pageUrl}/?src=${encodeURIComponent(masterUrl)}`);
  return {
    page,
    requests,
    state: () => page.evaluate(() => window.__player),
    /** Writes requests.jsonl, console.log, player.json and screenshot.png into dir. */
    async finish(extra = {}) {
      let state = null;
      try {
        await page.screenshot({ path: path.join(dir, 'screenshot.png') });
        state = await page.evaluate(() => window.__player);
      } catch (e) {
        consoleLines.push(`harness: ${e.message}`);
      }
      fs.writeFileSync(path.join(dir, 'requests.jsonl'), requests.map((r) => JSON.stringify(r)).join('\n') + '\n');
      fs.writeFileSync(path.join(dir, 'console.log'), consoleLines.join('\n') + '\n');
      fs.writeFileSync(path.join(dir, 'player.json'), JSON.stringify({ ...extra, state }, null, 1));
      await context.close();
      return state;
    },
  };
}

export function kindOf(url) {
  const p = new URL(url).pathname;
  if (p.endsWith('master.m3u8')) return 'master';
  if (p.endsWith('.m3u8')) return 'playlist';
  if (p.endsWith('.ts') || p.endsWith('.m4s') || p.endsWith('.mp4')) return 'segment';
  if (p.endsWith('.json')) return 'steering';
  return 'other';
}

/** Longest interval (ms) in which currentTime did not advance, from `from` on (wall clock). */
export function longestStall(samples, from = 0, to = Infinity) {
  let longest = 0;
  let since = null;
  let last = null;
  for (const s of samples) {
    if (s.t < from || s.t > to) continue;
    if (last && s.currentTime <= last.currentTime + 0.001) {
      since ??= last.t;
      longest = Math.max(longest, s.t - since);
    } else {
      since = null;
    }
    last = s;
  }
  return longest;
}

/** currentTime at wall-clock `t` (the last sample at or before it). */
export function currentTimeAt(samples, t) {
  let v = 0;
  for (const s of samples) {
    if (s.t > t) break;
    v = s.currentTime;
  }
  return v;
}

/** Polls `fn` every `everyMs` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor(fn, timeoutMs, what, everyMs = 200) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * The p50/p90/max table of `metrics` over `results` grouped by `keys` (field names), as lines of
 * text after `title`; a missing value (a stage not in that variant) is left out of its figures.
 */
export function summarize(title, results, keys, metrics) {
  const lines = [title, `${keys.map((k) => k.padEnd(15)).join(' ')} ${'metric'.padEnd(20)}  n    p50    p90    max`];
  const groups = new Map();
  for (const r of results) {
    const k = keys.map((f) => r[f]).join('|');
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  for (const [k, rs] of groups) {
    for (const metric of metrics) {
      const v = rs.map((r) => r[metric]).filter((x) => typeof x === 'number');
      if (!v.length) continue;
      const f = (x) => String(Math.round(x)).padStart(6);
      lines.push(`${k.split('|').map((x) => x.padEnd(15)).join(' ')} ${metric.padEnd(20)} ${String(v.length).padStart(2)} ${f(percentile(v, 50))} ${f(percentile(v, 90))} ${f(Math.max(...v))}`);
    }
  }
  return lines;
}

/** Nearest-rank percentile of numbers. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}
