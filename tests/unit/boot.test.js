// web/js/boot.js as the modules import it: nothing starts, and the rules it owns for the
// boot script and the app alike (room paths, settings, signalling URL) hold.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as boot from '../../web/js/boot.js';

test('imported as a module, boot.js starts nothing', () => {
  // Under node there is no document: had it run start(), the import would have thrown.
  assert.equal(typeof boot.start, 'function');
  assert.equal(/** @type {any} */ (globalThis).meshcallBoot, undefined);
});

test('room paths: /r/<room>, percent-decoded; anything else is the lobby', () => {
  assert.deepEqual(boot.roomPath('/r/abc'), { raw: 'abc', id: 'abc' });
  assert.deepEqual(boot.roomPath('/r/a%2Db/'), { raw: 'a%2Db', id: 'a-b' });
  assert.deepEqual(boot.roomPath('/r/%E0%A4%A'), { raw: '%E0%A4%A', id: null });
  assert.equal(boot.roomPath('/'), undefined);
  assert.equal(boot.roomPath('/r/a/b'), undefined);
  assert.equal(boot.isRoomId('Some_Room-9'), true);
  assert.equal(boot.isRoomId('not valid'), false);
  assert.equal(boot.isRoomId('x'.repeat(65)), false);
});

test('settings: each one defaults when missing or malformed; the URL follows the page', () => {
  assert.deepEqual(boot.parseConfig(null), { wsUrl: null, iceTransportPolicy: 'all', socketMaxAgeMs: 0 });
  assert.deepEqual(boot.parseConfig({ wsUrl: 'wss://x/prod', iceTransportPolicy: 'relay', socketMaxAgeMs: 5 }),
    { wsUrl: 'wss://x/prod', iceTransportPolicy: 'relay', socketMaxAgeMs: 5 });
  assert.deepEqual(boot.parseConfig({ wsUrl: '', iceTransportPolicy: 'other', socketMaxAgeMs: -1 }),
    { wsUrl: null, iceTransportPolicy: 'all', socketMaxAgeMs: 0 });
  const none = boot.parseConfig({});
  assert.equal(boot.signallingUrl(none, { protocol: 'https:', host: 'h:8443' }), 'wss://h:8443/ws');
  assert.equal(boot.signallingUrl(none, { protocol: 'http:', host: 'h' }), 'ws://h/ws');
  assert.equal(boot.signallingUrl(boot.parseConfig({ wsUrl: 'wss://api/prod' }), { protocol: 'http:', host: 'h' }),
    'wss://api/prod');
});

test('every peer connection bundles everything on one transport', () => {
  assert.deepEqual(boot.connectionConfig([], 'relay'), { iceServers: [], iceTransportPolicy: 'relay', bundlePolicy: 'max-bundle' });
});
