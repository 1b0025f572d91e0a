// web/js/quality.js: what two getStats samples say, and the indicator's two-in-a-row rule.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QualityMeter, assess } from '../../web/js/quality.js';

/** @param {Partial<import('../../web/js/quality.js').QualitySample>} o */
const sample = (o) => ({ at: 0, connectionState: /** @type {RTCPeerConnectionState} */ ('connected'), framesDecoded: 0, packetsReceived: 0, packetsLost: 0, rttMs: 20, ...o });

test('assess: reconnecting, weak and good from one interval', () => {
  const a = sample({ at: 0 });
  assert.equal(assess(null, a, true), null, 'unknown from one sample');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 100, packetsReceived: 500 }), true), 'good');
  assert.equal(assess(a, sample({ at: 5_000, connectionState: 'disconnected' }), true), 'reconnecting');
  assert.equal(assess(a, sample({ at: 5_000, connectionState: 'failed' }), true), 'reconnecting');
  assert.equal(assess(a, sample({ at: 5_000 }), true), 'reconnecting', 'nothing arrived');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 100, packetsReceived: 500, packetsLost: 30 }), true), 'weak', '6 % lost');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 100, packetsReceived: 500, packetsLost: 10 }), true), 'good', '2 % lost');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 30, packetsReceived: 500 }), true), 'weak', '6 fps');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 0, packetsReceived: 250 }), false), 'good', 'camera off: no frames expected');
  assert.equal(assess(a, sample({ at: 5_000, framesDecoded: 100, packetsReceived: 500, rttMs: 800 }), true), 'weak', 'slow round trip');
  assert.equal(assess(sample({ connectionState: 'connecting' }), sample({ at: 5_000, packetsReceived: 10 }), true), null, 'no connected interval yet');
});

test('QualityMeter: trouble at once, weak and good only twice in a row', () => {
  const m = new QualityMeter();
  let t = 0;
  let frames = 0;
  let rx = 0;
  let lost = 0;
  /** @param {'good' | 'weak' | 'down'} kind */
  const step = (kind) => {
    t += 5_000;
    if (kind === 'down') return m.update(sample({ at: t, connectionState: 'disconnected', framesDecoded: frames, packetsReceived: rx, packetsLost: lost }), true);
    frames += 100;
    rx += 500;
    if (kind === 'weak') lost += 50;
    return m.update(sample({ at: t, framesDecoded: frames, packetsReceived: rx, packetsLost: lost }), true);
  };
  assert.equal(m.update(sample({ at: 0 }), true), null);
  assert.equal(step('good'), 'good', 'the first word at once');
  assert.equal(step('weak'), 'good', 'one weak interval is not told');
  assert.equal(step('good'), 'good');
  assert.equal(step('weak'), 'good');
  assert.equal(step('weak'), 'weak', 'two in a row are');
  assert.equal(step('good'), 'weak');
  assert.equal(step('good'), 'good');
  assert.equal(step('down'), 'reconnecting', 'reconnecting at once');
  assert.equal(step('good'), 'reconnecting', 'the first interval back has no connected start');
  assert.equal(step('good'), 'good', 'and out of it at once');
});
