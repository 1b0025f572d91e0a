// What the join-speed benchmark (bench.js) and its trace (trace.js) run with: the same
// Chromium, flags, viewport and meshcall flags, so that their figures describe one set-up.

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** One browser context per person, this size. */
export const VIEWPORT = { width: 1280, height: 720 };
// The e2e helpers' flags (tests/e2e/lib/call.js BASE_ARGS + FAKE_UI), copied rather than
// imported (that module registers node:test hooks): one fake camera and microphone.
export const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
];
// meshcall for a benchmark: no STUN (nothing to reach in the namespace), and no per-address
// limits (every page comes from 127.0.0.1; a full run makes about 90 joins in a few minutes).
export const SERVER_ARGS = ['--stun', 'none', '--max-joins-per-minute-per-ip', '0', '--max-connections-per-ip', '0'];
