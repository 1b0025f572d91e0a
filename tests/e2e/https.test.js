// A 3-person call over https with a self-signed certificate (`--tls-self-signed`), as on a
// LAN where browsers only allow the camera on https: the page, /config.json and the wss://
// signalling all go through meshcall's TLS, and the browser trusts exactly that
// certificate (its public key's hash, as a user accepting it once would), nothing else.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, roomName, withCall } from './lib/call.js';
import { startServer } from './lib/server.js';

test('3-person call over https with a self-signed certificate', { timeout: 120_000 }, async () => {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'meshcall-https-'));
  const server = await startServer({ args: ['--tls-self-signed', '--state-dir', stateDir] });
  /** @type {import('playwright-core').Browser | undefined} */
  let browser;
  try {
    assert.ok(server.origin.startsWith('https://'), `served over https: ${server.origin}`);
    const pem = readFileSync(path.join(stateDir, 'tls', 'self-signed.pem'), 'utf8');
    const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    const pin = createHash('sha256').update(spki).digest('base64');
    browser = await launchBrowser({ extraArgs: [`--ignore-certificate-errors-spki-list=${pin}`] });
    await withCall(browser, server, roomName('https'), async (call) => {
      for (let i = 0; i < 3; i++) await call.join(`P${i}`);
      await call.waitForMesh();
      await call.waitForColours();
      await call.waitForMediaFlow();
      await call.assertNoErrors();
      const page = call.all[0].page;
      assert.equal(await page.evaluate(() => window.isSecureContext), true, 'a secure context (camera allowed)');
      assert.match(page.url(), /^https:\/\//);
    });
  } finally {
    await browser?.close();
    await server.stop();
    rmSync(stateDir, { recursive: true, force: true }); // the certificate's private key too
  }
});
