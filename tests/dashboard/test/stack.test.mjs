// The dashboard against the real stack: the operator (target/debug/cvs-operator, dashboard on),
// kube-apiserver with RBAC and ServiceAccount tokens, DynamoDB Local for the state table, and the
// HLS origin simulator serving one event in three regions (TD 2 s). Environment in
// .cvs-env-dashboard (CVS_DASHBOARD_STATE_DIR), started when not up and then stopped again
// (CVS_DASHBOARD_KEEP_ENV=1 keeps it). Asserts, in headless Chromium:
//   - no token: the sign-in screen, and the API answers 401 (with the contract's headers);
//   - a ServiceAccount without RBAC on streaminstances is refused with the server's message, and
//     neither the StreamInstance nor the table item changes;
//   - keyboard alone (Tab, Enter, Escape): sign in with a token of a ServiceAccount that may
//     patch, close a region through the dialog (kubectl get and the table item follow, the Event
//     names the user), open it again;
//   - a frozen rendition (simulator freeze) is shown stale within its staleness bound + 1 s of the
//     freeze, and the region fails over (the screenshot target/dashboard-artifacts/failover.png);
//   - no CSP violation and no page error on any page.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CSP } from '../fixture-server.mjs';
import { REPO, artefactDir, launchBrowser, openPage, pressUntil, waitFor } from '../lib/browser.mjs';
import {
  REGIONS, envDown, envUp, freePort, instanceDomain, instanceName, kubectlFn, manifests, rbac, startOperator, startSim, stateItem,
} from '../lib/stack.mjs';

const STATE_DIR = process.env.CVS_DASHBOARD_STATE_DIR ?? path.join(REPO, '.cvs-env-dashboard');
const TD = 2;
const WAIT = 90_000;

describe('dashboard against the real operator', () => {
  const dir = artefactDir();
  let env;
  let startedEnv = false;
  let kubectl;
  let sim;
  let op;
  let browser;
  let ns;
  let table;
  const tokens = {};
  let open = [];

  before(async () => {
    const up = envUp(STATE_DIR);
    env = up.env;
    startedEnv = !up.wasUp;
    assert.equal(env.CVS_ENV_AWS, '1', 'DynamoDB Local and moto are up');
    kubectl = kubectlFn(env);
    await kubectl(['apply', '--server-side', '--force-conflicts', '-f', path.join(REPO, 'crds')]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/clusteredstreams.cvs.dev', 'crd/streaminstances.cvs.dev']);
    ns = `dash-${Date.now().toString(36)}`;
    table = `${ns}-state`;
    await kubectl(['create', 'namespace', ns]);
    sim = await startSim({ regions: REGIONS, td: TD, renditions: 2, logFile: path.join(dir, 'stack-sim.log') });
    await kubectl(['apply', '-n', ns, '-f', '-'], manifests({ table, origins: sim.regions }));
    await kubectl(['apply', '-f', '-'], rbac(ns));
    for (const sa of ['oncall', 'visitor']) {
      tokens[sa] = (await kubectl(['create', 'token', sa, '-n', ns, '--duration', '1h'])).trim();
    }
    op = await startOperator({ env, namespace: ns, logFile: path.join(dir, 'stack-operator.log'), freePort });
    await waitFor(async () => {
      const items = await Promise.all(REGIONS.map((r) => stateItem(env, table, instanceDomain(r)).catch(() => null)));
      return items.every((i) => i?.distro_open?.BOOL === true && i?.playlist_fresh?.BOOL === true);
    }, WAIT, 'every region healthy and open in the state table', 500);
    browser = await launchBrowser();
  });

  after(async () => {
    for (const p of open) await p.close().catch(() => {});
    await browser?.close();
    await op?.stop();
    await sim?.stop();
    if (ns && kubectl) await kubectl(['delete', 'namespace', ns, '--wait=false']).catch(() => {});
    if (startedEnv && process.env.CVS_DASHBOARD_KEEP_ENV !== '1') envDown(STATE_DIR);
  });

  afterEach(async () => {
    const found = [];
    for (const p of open) {
      found.push({ csp: await p.csp(), errors: p.errors });
      await p.close().catch(() => {});
    }
    open = [];
    for (const f of found) {
      assert.deepEqual(f.csp, [], 'Content-Security-Policy violations');
      assert.deepEqual(f.errors, [], 'page errors');
    }
  });

  async function page(label, opts = {}) {
    const p = await openPage(browser, op.dashboard, { label: `stack-${label}`, ...opts });
    open.push(p);
    return p;
  }

  async function signIn(p, token) {
    await waitFor(() => p.page.evaluate(() => document.activeElement?.id === 'token'), 15_000, 'the token field to have focus');
    await p.page.keyboard.type(token);
    await p.page.keyboard.press('Enter');
    await p.page.waitForSelector('.instance', { timeout: 15_000 });
    await waitFor(() => p.page.evaluate(() => document.getElementById('conn').dataset.state === 'live'), 15_000, 'the live indicator');
  }

  const distroOpen = async (region) => JSON.parse(await kubectl(['get', 'streaminstance', instanceName(region), '-n', ns, '-o', 'json'])).spec.distroOpen ?? true;
  const tableOpen = async (region) => (await stateItem(env, table, instanceDomain(region)))?.distro_open?.BOOL;
  const row = (p, region) => p.page.locator(`.instance[data-instance="${instanceName(region)}"]`);
  const text = async (loc) => (await loc.textContent()).replace(/\s+/g, ' ').trim();
  const dashboardEvents = async () => JSON.parse(await kubectl(['get', 'events', '-n', ns, '-o', 'json'])).items
    .filter((e) => e.reason === 'DistroOpenChangedFromDashboard');

  test('no token: the sign-in screen, and the API answers 401', async () => {
    for (const [method, p] of [['GET', '/api/state'], ['GET', '/api/events'], ['GET', '/api/session'],
      ['POST', `/api/namespaces/${ns}/streaminstances/${instanceName('us-east-1')}/distro-open`]]) {
      const r = await fetch(`${op.dashboard}${p}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'POST' ? '{"open":false}' : undefined });
      assert.equal(r.status, 401, `${method} ${p}`);
      assert.equal(r.headers.get('content-security-policy'), CSP, `CSP on ${p}`);
      await r.body?.cancel();
    }
    const bad = await fetch(`${op.dashboard}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"token":"not-a-token"}' });
    assert.equal(bad.status, 401, 'an invalid token');
    const root = await fetch(`${op.dashboard}/`);
    for (const [h, v] of [['content-security-policy', CSP], ['x-content-type-options', 'nosniff'], ['x-frame-options', 'DENY'], ['referrer-policy', 'no-referrer']]) {
      assert.equal(root.headers.get(h), v, h);
    }
    const p = await page('signin');
    await p.page.waitForSelector('#signin:not([hidden])');
    assert.equal(await p.page.isHidden('#dashboard'), true);
    await p.shot('stack-signin');
    assert.equal(await distroOpen('us-east-1'), true);
  });

  test('a ServiceAccount without RBAC is refused, and nothing changes', async () => {
    const p = await page('refused');
    await signIn(p, tokens.visitor);
    assert.equal(await text(p.page.locator('#who-name')), `system:serviceaccount:${ns}:visitor`);
    await row(p, 'us-east-1').locator('.action').click();
    await p.page.click('#confirm-ok');
    await waitFor(async () => (await p.page.textContent('#confirm-error')).length > 0, 15_000, 'the refusal');
    assert.equal(await text(p.page.locator('#confirm-error')),
      `Refused: system:serviceaccount:${ns}:visitor may not patch streaminstances/${instanceName('us-east-1')} in ${ns}`);
    await p.shot('stack-refused');
    await sleep(2000);
    assert.equal(await distroOpen('us-east-1'), true, 'spec.distroOpen unchanged');
    assert.equal(await tableOpen('us-east-1'), true, 'the table item unchanged');
    assert.deepEqual(await dashboardEvents(), [], 'no dashboard Event');
    await p.page.keyboard.press('Escape');
    assert.equal(await text(row(p, 'us-east-1').locator('.badge.open')), '● Open');
  });

  test('keyboard alone: sign in, close a region through the dialog, open it again', async () => {
    const region = 'ap-southeast-1';
    const p = await page('keyboard');
    await signIn(p, tokens.oncall);
    const kb = p.page.keyboard;
    const label = `Close ${region} (${instanceName(region)})…`;
    const focusedLabel = () => p.page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
    await pressUntil(p.page, 'Tab', async () => (await focusedLabel()) === label);
    await kb.press('Enter');
    await p.page.waitForSelector('#confirm[open]');
    assert.equal(await text(p.page.locator('#confirm-minopen')),
      `Closing ${region} leaves 2 open; minOpen is 1, so the operator will close it: its players move to the 2 other open regions.`);
    await kb.press('Escape');
    await waitFor(async () => !(await p.page.isVisible('#confirm')), 3000, 'Escape to cancel');
    assert.equal(await focusedLabel(), label, 'focus back on the button');
    assert.equal(await distroOpen(region), true, 'Escape changed nothing');
    await kb.press('Enter');
    await p.page.waitForSelector('#confirm[open]');
    await pressUntil(p.page, 'Tab', () => p.page.evaluate(() => document.activeElement?.id === 'confirm-ok'), 3);
    await kb.press('Enter');
    await waitFor(async () => (await distroOpen(region)) === false, 15_000, 'spec.distroOpen=false (kubectl get)');
    await waitFor(async () => (await tableOpen(region)) === false, 15_000, 'the table item closed');
    await waitFor(async () => (await text(row(p, region).locator('.badge.open'))) === '■ Closed', 15_000, 'the page to show it closed');
    assert.match(await text(row(p, region).locator('.open-detail')), /asked closed · DesiredClosed/);
    const events = await dashboardEvents();
    assert.ok(events.some((e) => (e.note ?? e.message ?? '').includes(`system:serviceaccount:${ns}:oncall set distroOpen=false`)), `the Event names the user: ${JSON.stringify(events.map((e) => e.note ?? e.message))}`);
    await p.shot('stack-closed');
    // Open it again, still with the keyboard only: the button now says Open.
    const openLabel = `Open ${region} (${instanceName(region)})…`;
    await waitFor(async () => (await focusedLabel()) === openLabel || (await p.page.getAttribute(`.instance[data-instance="${instanceName(region)}"] .action`, 'aria-label')) === openLabel, 10_000, 'the Open button');
    if ((await focusedLabel()) !== openLabel) await pressUntil(p.page, 'Tab', async () => (await focusedLabel()) === openLabel);
    await kb.press('Enter');
    await p.page.waitForSelector('#confirm[open]');
    await pressUntil(p.page, 'Tab', () => p.page.evaluate(() => document.activeElement?.id === 'confirm-ok'), 3);
    await kb.press('Enter');
    await waitFor(async () => (await distroOpen(region)) === true, 15_000, 'spec.distroOpen=true');
    await waitFor(async () => (await tableOpen(region)) === true, 15_000, 'the table item open');
    await waitFor(async () => (await text(row(p, region).locator('.badge.open'))) === '● Open', 15_000, 'the page to show it open');
  });

  test('a fresh rendition is never shown older than its bound', async () => {
    // The age shown is the time since the rendition's newest segment: a rendition the operator
    // judges fresh got one within its bound, so a fresh row showing more (say "6.8 s / 3 s", a
    // red bar) would tell the engineer the opposite of the verdict. Watched for 4 segments.
    const p = await page('fresh-ages');
    await signIn(p, tokens.oncall);
    let worst = { over: -Infinity };
    const until = Date.now() + 4 * TD * 1000;
    while (Date.now() < until) {
      const shown = await p.page.$$eval('.rendition[data-fresh="true"]', (els) => els.map((e) => ({
        uri: e.querySelector('.r-uri').title, text: e.querySelector('.r-age').textContent,
      })));
      for (const r of shown) {
        const m = /^([\d.]+) s \/ ([\d.]+) s$/.exec(r.text);
        assert.ok(m, `an age against a bound: ${r.text}`);
        const over = (Number(m[1]) - Number(m[2])) * 1000;
        if (over > worst.over) worst = { ...r, over };
      }
      await sleep(250);
    }
    assert.ok(worst.over <= 1000, `a fresh rendition shown ${Math.round(worst.over)} ms past its bound: ${worst.uri} "${worst.text}"`);
  });

  test('a frozen rendition is shown stale within its bound + 1 s; the region fails over', async () => {
    const region = 'eu-west-1';
    const p = await page('failover');
    await signIn(p, tokens.oncall);
    const sel = `.instance[data-instance="${instanceName(region)}"] .rendition`;
    await waitFor(async () => (await p.page.locator(`${sel}[data-fresh="true"]`).count()) >= 2, WAIT, 'the region\'s renditions fresh');
    // The bound of the rendition to freeze, from the snapshot the page shows.
    const uris = await p.page.$$eval(`${sel} .r-uri`, (els) => els.map((e) => e.title));
    const uri = uris.find((u) => u.endsWith('/720p/index.m3u8')) ?? uris[0];
    const rendition = uri.split('/').at(-2);
    const stateRes = await p.page.evaluate(async () => (await fetch('/api/state')).json());
    const boundMs = stateRes.clusters[0].instances.find((i) => i.name === 'event-eu-west-1').renditions.find((r) => r.uri === uri).boundMs;
    assert.ok(boundMs > 0 && boundMs <= 1.5 * TD * 1000 + 1, `bound ${boundMs} ms`);
    // The page notes when it first shows the rendition stale (its own clock: same machine).
    await p.page.evaluate(({ sel: s, uri: u }) => {
      window.__staleAt = null;
      const check = () => {
        const el = [...document.querySelectorAll(s)].find((x) => x.querySelector('.r-uri').title === u);
        if (!window.__staleAt && el?.dataset.fresh === 'false' && el.querySelector('.r-state').textContent.includes('Stale')) window.__staleAt = Date.now();
      };
      new MutationObserver(check).observe(document.body, { subtree: true, attributes: true, childList: true, characterData: true });
    }, { sel, uri });
    const t0 = Date.now();
    await sim.fault({ kind: 'freeze', region, stream: 's0001', rendition, resource: 'media' });
    const staleAt = await waitFor(() => p.page.evaluate(() => window.__staleAt), 30_000, 'the page to show the rendition stale', 50);
    const shownMs = staleAt - t0;
    fs.writeFileSync(path.join(artefactDir(), 'stack-freeze.json'), JSON.stringify({ region, uri, boundMs, shownMs }, null, 1));
    console.log(`# frozen rendition ${uri} shown stale ${shownMs} ms after the freeze (bound ${boundMs} ms)`);
    assert.ok(shownMs <= boundMs + 1000, `shown stale ${shownMs} ms after the freeze; bound ${boundMs} ms + 1 s`);
    const r = row(p, region);
    await waitFor(async () => (await text(r.locator('.badge.health'))) === '▲ Stale', 15_000, 'the instance stale');
    await waitFor(async () => (await text(r.locator('.badge.open'))) === '■ Closed', 15_000, 'the instance failed over');
    assert.match(await text(r.locator('.open-detail')), /FailedOver/);
    await waitFor(async () => (await tableOpen(region)) === false, 15_000, 'the table item closed by failover');
    for (const other of REGIONS.filter((x) => x !== region)) {
      assert.equal(await text(row(p, other).locator('.badge.open')), '● Open', `${other} still serving`);
    }
    assert.match(await text(p.page.locator('.open-summary')), /^2 of 3 open/);
    // Let the timeline and ages settle into a representative picture, then keep it.
    await sleep(1500);
    await p.shot('failover');
    const wall = await page('failover-wall', { viewport: { width: 1920, height: 1080 } });
    await signIn(wall, tokens.oncall);
    await wall.shot('failover-wall');
    await sim.heal();
    await waitFor(async () => (await text(r.locator('.badge.health'))) === '✔ Healthy', WAIT, 'healthy after the heal');
  });
});
