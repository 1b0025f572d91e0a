// Firefox for the browser tests: Debian's firefox-esr driven by npm's puppeteer-core over
// WebDriver BiDi (Playwright cannot drive stock Firefox), behind the few Playwright methods
// the tests use, so that one test body runs in either browser (lib/call.js picks by
// `browser.kind`).
//
// - One Firefox process; each participant is a BiDi user context (own cookies and storage)
//   with a page of `type: 'window'`, so no page is a background tab (timers throttled).
// - Prefs (shared/browser-testing.md, "Firefox too"): inside a loopback-only namespace
//   Firefox gathers no ICE candidate at all unless camera and microphone count as granted
//   (the permission prefs), and skips 127.0.0.1 without `media.peerconnection.ice.loopback`.
// - Init scripts go in with evaluateOnNewDocument, before the page's own scripts.
// - A click, a key or typing first brings the page's window to the front, as a person's
//   click does: Firefox holds getUserMedia (the camera turned back on) until the window
//   asking is focused, and every participant's window is a window of its own.
//
// What is not here (Playwright's routes, per-context permissions) throws, naming itself.

import puppeteer from 'puppeteer-core';

export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

/** The prefs a call needs inside a loopback-only namespace, with fake media. */
export const FIREFOX_PREFS = {
  'permissions.default.camera': 1,
  'permissions.default.microphone': 1,
  'media.navigator.permission.disabled': true,
  'media.navigator.streams.fake': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.block-webaudio': false,
  // No network chatter at start (nothing could be reached anyway).
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'app.update.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
};

/** Launch Firefox; the result stands in for a Playwright Browser. */
export async function launchFirefox() {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    protocol: 'webDriverBiDi',
    extraPrefsFirefox: FIREFOX_PREFS,
    args: ['--no-remote'],
  });
  return new FirefoxBrowser(browser);
}

export class FirefoxBrowser {
  /** @param {import('puppeteer-core').Browser} browser */
  constructor(browser) {
    this.pp = browser;
    /** @type {'firefox'} */
    this.kind = 'firefox';
  }

  /** @param {{ viewport?: { width: number, height: number }, permissions?: string[] }} [opts] */
  async newContext(opts = {}) {
    if (opts.permissions) throw new Error('firefox adapter: per-context permissions are not supported (prefs grant camera and microphone)');
    return new FirefoxContext(await this.pp.createBrowserContext(), opts.viewport ?? { width: 1280, height: 720 });
  }

  async close() {
    await this.pp.close();
  }
}

export class FirefoxContext {
  /**
   * @param {import('puppeteer-core').BrowserContext} ctx
   * @param {{ width: number, height: number }} viewport
   */
  constructor(ctx, viewport) {
    this.pp = ctx;
    this.viewport = viewport;
    /** @type {[Function, unknown][]} */
    this.scripts = [];
  }

  /** @param {Function} fn @param {unknown} [arg] */
  async addInitScript(fn, arg) {
    this.scripts.push([fn, arg]);
  }

  async newPage() {
    const page = await this.pp.newPage({ type: 'window' });
    await page.setViewport(this.viewport);
    for (const [fn, arg] of this.scripts) await page.evaluateOnNewDocument(/** @type {any} */ (fn), arg);
    return new FirefoxPage(page);
  }

  route() {
    throw new Error('firefox adapter: routes are not supported');
  }

  grantPermissions() {
    throw new Error('firefox adapter: per-context permissions are not supported');
  }

  async close() {
    await this.pp.close();
  }
}

export class FirefoxPage {
  /** @param {import('puppeteer-core').Page} page */
  constructor(page) {
    this.pp = page;
    this.keyboard = {
      press: async (/** @type {any} */ key) => {
        await page.bringToFront();
        await page.keyboard.press(key);
      },
    };
  }

  /** @param {string} event @param {(x: any) => void} fn */
  on(event, fn) {
    this.pp.on(/** @type {any} */ (event), fn);
  }

  /** @param {string} url @param {{ waitUntil?: string }} [opts] */
  async goto(url, opts = {}) {
    const waitUntil = opts.waitUntil === 'domcontentloaded' ? 'domcontentloaded' : 'load';
    return this.pp.goto(url, { waitUntil });
  }

  url() {
    return this.pp.url();
  }

  async reload() {
    await this.pp.reload({ waitUntil: 'domcontentloaded' });
  }

  /** @param {Function} fn @param {unknown} [arg] */
  evaluate(fn, arg) {
    return this.pp.evaluate(/** @type {any} */ (fn), arg);
  }

  /**
   * @param {Function} fn @param {unknown} arg
   * @param {{ timeout?: number, polling?: number | 'raf' }} [opts]
   */
  async waitForFunction(fn, arg, opts = {}) {
    return this.pp.waitForFunction(/** @type {any} */ (fn), { timeout: opts.timeout ?? 30_000, polling: opts.polling ?? 'raf' }, arg);
  }

  /** @param {string} sel @param {{ state?: string, timeout?: number }} [opts] */
  async waitForSelector(sel, opts = {}) {
    return this.pp.waitForSelector(sel, { visible: opts.state === 'visible', hidden: opts.state === 'hidden', timeout: opts.timeout ?? 30_000 });
  }

  /** Click once the element is there and visible (as Playwright's click waits). @param {string} sel */
  async click(sel) {
    await this.pp.bringToFront();
    await this.pp.locator(sel).setTimeout(30_000).click();
  }

  /** @param {string} sel @param {string} text */
  async fill(sel, text) {
    await this.pp.bringToFront();
    await this.pp.locator(sel).setTimeout(30_000).fill(text);
  }

  /** @param {string} sel @param {string} key */
  async press(sel, key) {
    await this.pp.bringToFront();
    await this.pp.focus(sel);
    await this.pp.keyboard.press(/** @type {any} */ (key));
  }

  /** @param {string} sel @param {string} value */
  async selectOption(sel, value) {
    await this.pp.waitForSelector(sel, { timeout: 30_000 });
    await this.pp.evaluate((sel, value) => {
      const el = /** @type {HTMLSelectElement} */ (document.querySelector(sel));
      el.value = value;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }, sel, value);
  }

  /** @param {string} sel */
  textContent(sel) {
    return this.pp.evaluate((sel) => document.querySelector(sel)?.textContent ?? null, sel);
  }

  /** @param {string} sel */
  inputValue(sel) {
    return this.pp.evaluate((sel) => /** @type {HTMLInputElement} */ (document.querySelector(sel)).value, sel);
  }

  /** @param {string} sel @param {string} name */
  getAttribute(sel, name) {
    return this.pp.evaluate((sel, name) => document.querySelector(sel)?.getAttribute(name) ?? null, sel, name);
  }

  /** As Playwright's: there, with a box, and not visibility:hidden. @param {string} sel */
  isVisible(sel) {
    return this.pp.evaluate((sel) => {
      const el = document.querySelector(sel);
      if (!el) return false;
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden';
    }, sel);
  }

  /** @param {string} sel @param {Function} fn */
  $$eval(sel, fn) {
    return this.pp.$$eval(sel, /** @type {any} */ (fn));
  }

  /** @param {{ path: string }} opts */
  async screenshot(opts) {
    await this.pp.screenshot({ path: /** @type {`${string}.png`} */ (opts.path) });
  }

  /** @param {{ width: number, height: number }} size */
  async setViewportSize(size) {
    await this.pp.setViewport(size);
  }

  async close() {
    await this.pp.close();
  }
}
