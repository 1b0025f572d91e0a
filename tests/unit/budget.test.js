// web/js/budget.js: the split, the rungs' hysteresis, and a budget that follows the link
// without flipping the picture size.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PER_PEER_MAX_BPS, PER_PEER_MIN_BPS, UploadBudget, VIDEO_BUDGET_BPS, splitBudget, targetHeight,
} from '../../web/js/budget.js';

test('splitBudget shares fairly and gives what a constrained stream cannot use to the rest', () => {
  assert.deepEqual(splitBudget(3_000_000, [Infinity, Infinity, Infinity], 100_000, 5_000_000), [1_000_000, 1_000_000, 1_000_000]);
  assert.deepEqual(splitBudget(3_000_000, [Infinity, 400_000, Infinity], 100_000, 5_000_000), [1_300_000, 400_000, 1_300_000]);
  // Never under the floor, never over the ceiling.
  assert.deepEqual(splitBudget(1_000_000, [10_000, Infinity], 150_000, 600_000), [150_000, 600_000]);
});

test('targetHeight: down at once, up only with a margin', () => {
  assert.equal(targetHeight(2_000_000), 720);
  assert.equal(targetHeight(833_333), 540);
  assert.equal(targetHeight(400_000), 360);
  assert.equal(targetHeight(100_000), 240);
  // Just over 720p's floor: from 540 it stays 540; from 720 it stays 720.
  assert.equal(targetHeight(1_250_000, 540), 540);
  assert.equal(targetHeight(1_250_000, 720), 720);
  assert.equal(targetHeight(1_500_000, 540), 720);
  // Under the current rung's floor: down at once.
  assert.equal(targetHeight(1_100_000, 720), 540);
});

test('the picture size follows the mesh, not the estimate', () => {
  const b = new UploadBudget();
  const source = { height: 720, screen: false };
  const scales = (/** @type {string[]} */ ids) => [...b.limits(ids, source).values()].map((l) => l.scaleResolutionDownBy);
  assert.deepEqual(scales(['a']), [1]);
  assert.deepEqual(scales(['a', 'b']), [1, 1]);
  assert.deepEqual(scales(['a', 'b', 'c']), [4 / 3, 4 / 3, 4 / 3]); // 833 kbit/s each: 540p, exactly
  // A thin path's estimate moves neither its picture size nor its own cap (the browser's
  // congestion control holds it to what the path carries), but what it cannot use goes to
  // the others.
  for (const e of [300_000, 250_000, 320_000, 280_000]) b.estimate('c', e);
  const l = b.limits(['a', 'b', 'c'], source);
  assert.equal(l.get('c')?.scaleResolutionDownBy, 4 / 3);
  assert.equal(720 / (l.get('c')?.scaleResolutionDownBy ?? 0), 540, 'an even height');
  assert.equal(l.get('c')?.maxBitrate, 833_333, 'the thin stream keeps its equal share');
  assert.ok((l.get('a')?.maxBitrate ?? 0) > 1_000_000, `the rest goes to the others: ${l.get('a')?.maxBitrate}`);
  // A screen keeps its lines.
  assert.deepEqual([...b.limits(['a'], { height: 1080, screen: true }).values()][0], { maxBitrate: PER_PEER_MAX_BPS, scaleResolutionDownBy: 1 });
});

test('an estimate that wobbles around a threshold neither flips the scale nor moves the split', () => {
  // The case: a 1 Mbit/s uplink whose estimate sits near a rung's floor (the old
  // room.js flipped the scale 1 <-> 1.33 on it every few samples).
  const b = new UploadBudget();
  const source = { height: 720, screen: false };
  const seen = new Set();
  const others = new Set();
  for (let i = 0; i < 12; i++) {
    b.estimate('a', i % 2 ? 450_000 : 520_000);
    const l = b.limits(['a', 'b'], source);
    seen.add(l.get('a')?.scaleResolutionDownBy);
    seen.add(l.get('b')?.scaleResolutionDownBy);
    if (i >= 3) others.add(l.get('b')?.maxBitrate);
  }
  assert.deepEqual([...seen], [1]);
  assert.equal(others.size, 1, `split moved for noise: ${[...others]}`);
});

test('the split follows paths that really change, down and up', () => {
  const b = new UploadBudget();
  const source = { height: 720, screen: false };
  const caps = () => [...b.limits(['a', 'b'], source).values()].map((l) => l.maxBitrate);
  assert.deepEqual(caps(), [VIDEO_BUDGET_BPS / 2, VIDEO_BUDGET_BPS / 2]);
  for (let i = 0; i < 4; i++) b.estimate('a', 300_000);
  const [a, other] = caps();
  assert.equal(a, VIDEO_BUDGET_BPS / 2, 'a thin path keeps its share');
  assert.ok(other > VIDEO_BUDGET_BPS / 2 && other <= PER_PEER_MAX_BPS, `the other gets what it leaves: ${other}`);
  for (let i = 0; i < 6; i++) b.estimate('a', 1_500_000);
  assert.deepEqual(caps(), [VIDEO_BUDGET_BPS / 2, VIDEO_BUDGET_BPS / 2], 'back to equal shares');
  b.estimate('a', 100_000);
  b.forget('a');
  assert.deepEqual(caps(), [VIDEO_BUDGET_BPS / 2, VIDEO_BUDGET_BPS / 2], 'a peer that left is forgotten');
});
