// Debian's Chromium, headless, through playwright-core (no browser download), as tests/player
// does; a page wrapper that records the console, page errors and every Content-Security-Policy
// violation, and the artefact directory (target/dashboard-artifacts/).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const HERE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const REPO = path.resolve(HERE, '..', '..');
export const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(REPO, process.env.CARGO_TARGET_DIR) : path.join(REPO, 'target');
export const CHROMIUM = process.env.CVS_CHROMIUM ?? '/usr/bin/chromium';
/** Screenshots and logs of the runs; the newest run overwrites files of the same name. */
export const ARTEFACTS = process.env.CVS_DASHBOARD_ARTEFACTS ?? path.join(TARGET, 'dashboard-artifacts');

export function artefactDir() {
  fs.mkdirSync(ARTEFACTS, { recursive: true });
  return ARTEFACTS;
}

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run tests/dashboard/run.sh, which installs it`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}

/**
 * A new context and page on `url`: {page, context, console, csp, errors, shot(name), close()}.
 * `csp` collects securitypolicyviolation events seen by the page (listened for before any of the
 * page's own scripts run) and console errors that name the Content Security Policy.
 */
export async function openPage(browser, url, { viewport = { width: 1440, height: 900 }, colorScheme = 'dark', label = 'page' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, reducedMotion: 'reduce' });
  const page = await context.newPage();
  const consoleLines = [];
  const csp = [];
  const errors = [];
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  page.on('console', (m) => {
    const line = `${new Date().toISOString()} ${m.type()} ${m.text()}`;
    consoleLines.push(line);
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });
  page.on('pageerror', (e) => {
    errors.push(e.message);
    consoleLines.push(`${new Date().toISOString()} pageerror ${e.message}`);
  });
  if (url) await page.goto(url);
  const dir = artefactDir();
  return {
    page,
    context,
    console: consoleLines,
    errors,
    /** Every CSP violation: the console's and the page's own securitypolicyviolation events. */
    async csp() {
      const seen = await page.evaluate(() => window.__csp).catch(() => []);
      return [...csp, ...(seen ?? [])];
    },
    async shot(name) {
      const file = path.join(dir, `${name}.png`);
      await page.screenshot({ path: file, fullPage: false });
      return file;
    },
    async close() {
      fs.writeFileSync(path.join(dir, `${label}.console.log`), `${consoleLines.join('\n')}\n`);
      await context.close();
    },
  };
}

/** Polls `fn` every `everyMs` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor(fn, timeoutMs, what, everyMs = 100) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
    } catch (e) {
      last = undefined;
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${e.message}`);
    }
    if (last) return last;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Presses `key` until `check()` is true (at most `max` times); returns how many presses. */
export async function pressUntil(page, key, check, max = 60) {
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press(key);
    if (await check()) return i;
  }
  throw new Error(`${key} pressed ${max} times without reaching the element`);
}
