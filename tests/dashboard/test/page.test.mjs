// The dashboard page in headless Chromium against the fixture server (fixture-server.mjs, the
// same HTTP contract as the operator's dashboard server, from fixtures/snapshot.json): what it
// shows, that updates change text in place without moving the layout, the confirmation dialog
// and its minOpen outcome, keyboard-only operation, refusals, sign-in and sign-out, the
// connection indicator across a dropped stream, hostile values, and no CSP violation anywhere.
// Screenshots go to target/dashboard-artifacts/. The real operator: test/stack.test.mjs.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFixtureServer, loadSnapshot } from '../fixture-server.mjs';
import { launchBrowser, openPage, pressUntil, waitFor } from '../lib/browser.mjs';

let browser;
let server;
let open = [];

before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});
afterEach(async () => {
  // Every page of every test: no CSP violation, no uncaught error. Everything is closed first,
  // so a failing test leaves no stream or browser context behind.
  const found = [];
  for (const p of open) {
    found.push({ csp: await p.csp(), errors: p.errors });
    await p.close().catch(() => {});
  }
  open = [];
  await server?.stop();
  server = null;
  for (const f of found) {
    assert.deepEqual(f.csp, [], 'Content-Security-Policy violations');
    assert.deepEqual(f.errors, [], 'page errors');
  }
});

async function page(opts = {}, label = 'page') {
  const p = await openPage(browser, server.url, { label, ...opts });
  open.push(p);
  return p;
}

/** Signs in by typing the token into the form (focused on load) and pressing Enter. */
async function signIn(p, token = 'admin') {
  await waitFor(() => p.page.evaluate(() => document.activeElement?.id === 'token'), 10_000, 'the token field to have focus');
  await p.page.keyboard.type(token);
  await p.page.keyboard.press('Enter');
  await p.page.waitForSelector('.instance');
  await waitFor(() => p.page.evaluate(() => document.getElementById('conn').dataset.state === 'live'), 10_000, 'the live indicator');
}

const row = (p, name) => p.page.locator(`.instance[data-instance="${name}"]`);
const text = async (loc) => (await loc.textContent()).replace(/\s+/g, ' ').trim();

describe('dashboard page (fixture server)', () => {
  test('without a session: the sign-in screen, 401 from the API, a bad token refused', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'signin');
    await p.page.waitForSelector('#signin:not([hidden])');
    assert.equal(await p.page.isHidden('#dashboard'), true, 'nothing of the streams before sign-in');
    const statuses = await p.page.evaluate(async () => Promise.all(['/api/state', '/api/events'].map(async (u) => (await fetch(u)).status)));
    assert.deepEqual(statuses, [401, 401]);
    await p.shot('signin');
    await p.page.keyboard.type('not-a-token');
    await p.page.keyboard.press('Enter');
    await waitFor(async () => /did not accept/.test(await p.page.textContent('#signin-error')), 5000, 'the refusal');
    assert.equal(await p.page.inputValue('#token'), '', 'the token field is cleared');
    assert.equal(await p.page.isHidden('#dashboard'), true);
  });

  test('signed in: every cluster, instance and rendition, with words and shapes, headroom and timeline', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'overview');
    await signIn(p);
    // The token is not kept anywhere in the browser; the session cookie is not readable.
    const kept = await p.page.evaluate(() => ({ ls: localStorage.length, ss: sessionStorage.length, cookie: document.cookie }));
    assert.deepEqual(kept, { ls: 0, ss: 0, cookie: '' });
    assert.equal(await p.page.locator('.cluster').count(), 2);
    const live = p.page.locator('.cluster[data-cluster="live/event"]');
    assert.equal(await text(live.locator('.open-summary')), '2 of 3 open (3 asked open), minOpen 1: 1 more may close');
    assert.equal(await text(p.page.locator('.cluster[data-cluster="news/bulletin"] .open-summary')), '2 of 2 open, minOpen 2: none may close');
    // Instances in the server's order, region first.
    assert.deepEqual(await live.locator('.instance .region').allTextContents(), ['ap-southeast-1', 'eu-west-1', 'us-east-1']);
    const eu = row(p, 'event-eu-west-1');
    assert.equal(await text(eu.locator('.badge.health')), '▲ Stale');
    assert.equal(await text(eu.locator('.badge.open')), '■ Closed');
    assert.match(await text(eu.locator('.open-detail')), /asked open · FailedOver/);
    assert.match(await text(eu.locator('.lag')), /Lagging 4\.2 s/);
    const stale = eu.locator('.rendition[data-fresh="false"]');
    assert.equal(await stale.count(), 1);
    assert.equal(await text(stale.locator('.r-uri')), '720p');
    assert.equal(await text(stale.locator('.r-state')), '▲ Stale');
    assert.match(await text(stale.locator('.r-age')), /^\d+\.\d s \/ 3 s$/);
    const us = row(p, 'event-us-east-1');
    assert.equal(await text(us.locator('.badge.health')), '✔ Healthy');
    assert.equal(await text(us.locator('.badge.open')), '● Open');
    assert.equal(await text(row(p, 'bulletin-eu-central-1').locator('.badge.health')), '○ Not judged yet');
    // Colour is never the only signal: every badge has a shape and a word.
    const bare = await p.page.$$eval('.badge', (els) => els.filter((e) => !e.querySelector('.icon').textContent.trim() || !e.querySelector('.label').textContent.trim()).length);
    assert.equal(bare, 0);
    assert.equal(await text(live.locator('.badge.pub')), '✔ Published');
    assert.equal(await text(p.page.locator('.cluster[data-cluster="news/bulletin"] .badge.pub')), '▲ Not published');
    // Timeline newest first, with event sequence and user.
    const seqs = await live.locator('.timeline .ev-seq').allTextContents();
    assert.deepEqual(seqs, ['#18', '#17', '#16']);
    assert.equal(await text(live.locator('.timeline .event').nth(2).locator('.ev-user')), 'by alice@example.com');
    // The stale age keeps growing between snapshots.
    const a0 = parseFloat(await text(stale.locator('.r-age')));
    await waitFor(async () => parseFloat(await text(stale.locator('.r-age'))) >= a0 + 0.5, 5000, 'the stale age to advance');
    await p.shot('overview-wide-dark');
  });

  test('updates change text in place: same nodes, same row boxes', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'in-place');
    await signIn(p);
    const boxes = () => p.page.$$eval('.instance, .cluster, .timeline', (els) => els.map((e) => {
      const r = e.getBoundingClientRect();
      return [Math.round(r.top), Math.round(r.height), Math.round(r.width)];
    }));
    const before = await boxes();
    await p.page.$$eval('.instance, .rendition, .event', (els) => els.forEach((e) => { e.__mark = true; }));
    server.mutate((s) => {
      const eu = s.clusters[0].instances[1];
      eu.healthy = true;
      eu.healthReason = 'Fresh';
      eu.renditions[0].fresh = true;
      eu.renditions[0].ageMs = 100;
      eu.lagging = null;
      for (const r of s.clusters[0].instances[0].renditions) r.ageMs = 12345;
      s.clusters[0].timeline.unshift({ at: new Date().toISOString(), instance: 'event-eu-west-1', kind: 'HealthChanged', message: 'Healthy again', eventSeq: 19, user: null });
    });
    const eu = row(p, 'event-eu-west-1');
    await waitFor(async () => (await text(eu.locator('.badge.health'))) === '✔ Healthy', 5000, 'eu-west-1 healthy');
    const unmarked = await p.page.$$eval('.instance, .rendition', (els) => els.filter((e) => !e.__mark).length);
    assert.equal(unmarked, 0, 'rows and renditions were updated, not rebuilt');
    assert.equal(await p.page.$$eval('.event', (els) => els.filter((e) => !e.__mark).length), 1, 'only the new timeline entry is new');
    assert.deepEqual(await boxes(), before, 'no row, cluster or timeline moved or changed size');
    assert.equal(await text(p.page.locator('.cluster[data-cluster="live/event"] .timeline .ev-seq').first()), '#19');
    // The change is announced to screen readers.
    await waitFor(async () => /eu-west-1 \(event-eu-west-1\) is now healthy/.test(await p.page.textContent('#announce')), 5000, 'the announcement');
  });

  test('keyboard alone: sign in, close through the dialog (Escape cancels), sign out', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'keyboard');
    await signIn(p);
    const kb = p.page.keyboard;
    const focused = () => p.page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.id ?? '');
    await pressUntil(p.page, 'Tab', async () => (await focused()) === 'Close us-east-1 (event-us-east-1)…');
    // The focus is visible.
    const outline = await p.page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'a visible focus ring');
    await kb.press('Enter');
    await p.page.waitForSelector('#confirm[open]');
    assert.equal(await text(p.page.locator('#confirm-minopen')),
      'Closing us-east-1 leaves 1 open; minOpen is 1, so the operator will close it: its players move to the 1 other open region.');
    await p.shot('dialog-close');
    // Tab stays in the dialog.
    for (let i = 0; i < 5; i++) {
      await kb.press('Tab');
      assert.equal(await p.page.evaluate(() => document.getElementById('confirm').contains(document.activeElement)), true, 'focus stays in the dialog');
    }
    await kb.press('Escape');
    await waitFor(async () => !(await p.page.isVisible('#confirm')), 3000, 'the dialog to close on Escape');
    assert.equal(await focused(), 'Close us-east-1 (event-us-east-1)…', 'focus back on the button');
    assert.equal(server.requests.filter((r) => r.method === 'POST' && r.path.includes('distro-open')).length, 0, 'Escape sent nothing');
    // Again, and confirm: Tab from Cancel to the confirm button, Enter.
    await kb.press('Enter');
    await p.page.waitForSelector('#confirm[open]');
    await pressUntil(p.page, 'Tab', async () => p.page.evaluate(() => document.activeElement?.id === 'confirm-ok'), 3);
    await kb.press('Enter');
    const us = row(p, 'event-us-east-1');
    await waitFor(async () => (await text(us.locator('.badge.open'))) === '■ Closed', 5000, 'us-east-1 closed');
    const post = server.requests.find((r) => r.method === 'POST' && r.path === '/api/namespaces/live/streaminstances/event-us-east-1/distro-open');
    assert.deepEqual(post.body, { open: false });
    assert.equal(post.csrf, [...server.sessions.values()][0].csrf, 'X-CSRF-Token of the session');
    assert.equal(await text(us.locator('.action')), 'Open…');
    assert.equal(await text(p.page.locator('.cluster[data-cluster="live/event"] .timeline .ev-user').first()), 'by admin');
    assert.match(await p.page.textContent('#announce'), /Asked to close event-us-east-1/);
    // Sign out with the keyboard: the sign-in screen comes back.
    await pressUntil(p.page, 'Shift+Tab', async () => p.page.evaluate(() => document.activeElement?.id === 'signout'));
    await kb.press('Enter');
    await p.page.waitForSelector('#signin:not([hidden])');
    assert.equal(server.sessions.size, 0, 'the session is forgotten');
    assert.equal(await p.page.locator('.instance').count(), 0, 'nothing of the streams is left in the page');
    assert.equal(await p.page.evaluate(async () => (await fetch('/api/state')).status), 401);
  });

  test('the dialog says when minOpen makes the operator keep a region open', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'minopen');
    await signIn(p);
    await row(p, 'bulletin-us-west-2').locator('.action').click();
    assert.equal(await text(p.page.locator('#confirm-minopen')),
      'Closing us-west-2 leaves 1 open; minOpen is 2, so the operator will keep it open (HeldOpenForMinOpen) until another region is open.');
    await p.page.keyboard.press('Escape');
    await row(p, 'event-eu-west-1').locator('.action').click();
    assert.match(await text(p.page.locator('#confirm-minopen')), /^eu-west-1 is already closed \(FailedOver\)/);
    // The text follows the live state while the dialog is open.
    await p.page.keyboard.press('Escape');
    await row(p, 'event-us-east-1').locator('.action').click();
    server.mutate((s) => {
      const ap = s.clusters[0].instances[0];
      ap.effectiveOpen = false;
      ap.openReason = 'FailedOver';
      ap.healthy = false;
      s.clusters[0].effectiveOpenCount = 1;
    });
    await waitFor(async () => /leaves 0 open; minOpen is 1, so the operator will keep it open/.test(await text(p.page.locator('#confirm-minopen'))), 5000, 'the dialog to follow the snapshot');
    await p.shot('dialog-minopen');
  });

  test('a refused action shows the server\'s message and changes nothing', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'refused');
    await signIn(p, 'viewer');
    await row(p, 'event-us-east-1').locator('.action').click();
    await p.page.click('#confirm-ok');
    await waitFor(async () => (await p.page.textContent('#confirm-error')).includes('may not patch'), 5000, 'the refusal');
    assert.equal(await text(p.page.locator('#confirm-error')), 'Refused: system:serviceaccount:live:viewer may not patch streaminstances/event-us-east-1 in live');
    assert.equal(await p.page.getAttribute('#confirm-error', 'role'), 'alert');
    await p.shot('refused');
    assert.equal(server.snapshot().clusters[0].instances[2].desiredOpen, true);
    await p.page.keyboard.press('Escape');
    assert.equal(await text(row(p, 'event-us-east-1').locator('.badge.open')), '● Open');
  });

  test('the connection indicator follows a dropped stream and the page reconnects', async () => {
    server = await startFixtureServer();
    const p = await page({}, 'reconnect');
    await signIn(p);
    const conn = () => p.page.evaluate(() => document.getElementById('conn').dataset.state);
    server.refuseStreams(true);
    server.dropStreams();
    await waitFor(async () => (await conn()) === 'reconnecting', 10_000, 'the reconnecting indicator');
    assert.match(await text(p.page.locator('#conn')), /Reconnecting/);
    assert.equal(await text(p.page.locator('#updated-label')), 'Data as of', 'the figures are marked old');
    await p.shot('reconnecting');
    server.refuseStreams(false);
    await waitFor(async () => (await conn()) === 'live', 30_000, 'live again');
    server.mutate((s) => { s.clusters[0].instances[2].healthReason = 'AfterReconnect'; });
    await waitFor(async () => (await text(row(p, 'event-us-east-1').locator('.health-reason'))).startsWith('AfterReconnect'), 5000, 'updates after the reconnect');
    // A session that ends (operator restarted) brings the sign-in screen back.
    server.sessions.clear();
    server.dropStreams();
    await p.page.waitForSelector('#signin:not([hidden])', { timeout: 30_000 });
    assert.match(await p.page.textContent('#signin-error'), /session has ended/);
  });

  test('anonymous read: the streams without sign-in, no actions, actions refused', async () => {
    server = await startFixtureServer({ anonymousRead: true });
    const p = await page({ viewport: { width: 700, height: 1000 }, colorScheme: 'light' }, 'anonymous');
    await p.page.waitForSelector('.instance');
    assert.equal(await p.page.isVisible('#signin'), false);
    assert.equal(await p.page.isVisible('#readonly'), true);
    assert.equal(await p.page.locator('.action:visible').count(), 0, 'no action button without a session');
    const status = await p.page.evaluate(async () => (await fetch('/api/namespaces/live/streaminstances/event-us-east-1/distro-open', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"open":false}' })).status);
    assert.equal(status, 401);
    await p.shot('anonymous-narrow-light');
    await p.page.click('#signin-open');
    await p.page.keyboard.type('admin');
    await p.page.keyboard.press('Enter');
    await waitFor(() => p.page.isVisible('.action >> nth=0'), 5000, 'the action buttons after sign-in');
  });

  test('hostile values are shown as unknown, never crash the page', async () => {
    const snap = loadSnapshot();
    const inst = snap.clusters[0].instances[0];
    inst.renditions[0].ageMs = 'soon';
    inst.renditions[1].ageMs = -5;
    inst.renditions[1].boundMs = 0;
    // u64::MAX: no bound known.
    inst.renditions[2].boundMs = 18446744073709551615;
    inst.renditions[2].ageMs = 1500;
    inst.renditions.push({ uri: 42 }, null);
    inst.lagging = { status: true, lagSeconds: 'NaN' };
    inst.name = '<img src=x onerror=alert(1)>';
    snap.clusters[0].minOpen = 'many';
    snap.clusters[0].timeline.push(null, { at: 'yesterday', kind: '<b>x</b>' });
    snap.clusters.push(null, { namespace: 'x' });
    server = await startFixtureServer({ snapshot: snap });
    const p = await page({}, 'hostile');
    await signIn(p);
    assert.equal(await p.page.locator('img').count(), 0, 'names are text, never markup');
    assert.equal(await text(p.page.locator('.rendition').first().locator('.r-age')), '—');
    assert.equal(await text(p.page.locator('.rendition').nth(2).locator('.r-age')), '1.5 s / —');
    assert.equal(await p.page.locator('.cluster').count(), 2);
  });
});
