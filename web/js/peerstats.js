// What one RTCPeerConnection's getStats() says, boiled down to the few numbers the app and
// the browser tests use: is video arriving, is audio arriving, which candidate pair carries
// it and whether that pair is relayed, the sender's bandwidth estimate, and what the
// quality indicator (quality.js) reads: packets received and lost, the round trip.
//
// Nothing here is logged: candidate pairs carry IP addresses.

/**
 * @typedef {object} PeerSummary  the shape `window.collectStats` reports per peer
 * @property {RTCPeerConnectionState} connectionState
 * @property {number} framesDecoded
 * @property {number} frameWidth
 * @property {number} audioPackets
 * @property {number} packetsReceived  audio and video, in
 * @property {number} packetsLost  audio and video, in
 * @property {number | null} rttMs  the selected pair's current round trip
 * @property {string | null} pair  "addr:port/proto -> addr:port/proto" of the selected pair
 * @property {boolean} relayed  either end of the selected pair is a TURN relay
 * @property {number | null} availableOutgoingBitrate  bits/s, the sender's estimate
 */

/**
 * A summary with nothing received yet.
 * @param {RTCPeerConnectionState} connectionState
 * @returns {PeerSummary}
 */
export function emptySummary(connectionState) {
  return {
    connectionState,
    framesDecoded: 0,
    frameWidth: 0,
    audioPackets: 0,
    packetsReceived: 0,
    packetsLost: 0,
    rttMs: null,
    pair: null,
    relayed: false,
    availableOutgoingBitrate: null,
  };
}

/**
 * @param {RTCPeerConnection} pc
 * @returns {Promise<PeerSummary>}
 */
export async function summarize(pc) {
  const s = emptySummary(pc.connectionState);
  const report = await pc.getStats();
  /** @type {any} */
  let selected = null;
  report.forEach((/** @type {any} */ r) => {
    if (r.type === 'inbound-rtp') {
      s.packetsReceived += r.packetsReceived ?? 0;
      s.packetsLost += r.packetsLost ?? 0;
    }
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      // The flowing stream, if a glare left two video m-lines.
      if ((r.framesDecoded ?? 0) >= s.framesDecoded) {
        s.framesDecoded = r.framesDecoded ?? 0;
        s.frameWidth = r.frameWidth ?? s.frameWidth;
      }
    } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      s.audioPackets += r.packetsReceived ?? 0;
    } else if (r.type === 'transport' && r.selectedCandidatePairId) {
      selected = report.get(r.selectedCandidatePairId) ?? selected;
    } else if (r.type === 'candidate-pair' && r.selected === true) {
      // Firefox: no transport stats; it marks the pair in use (after an ICE restart the
      // nominated pair of the old generation can linger as succeeded).
      selected = r;
    } else if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && !selected) {
      selected = r;
    }
  });
  if (selected) {
    const l = report.get(selected.localCandidateId);
    const rm = report.get(selected.remoteCandidateId);
    if (l && rm) {
      s.pair = `${l.address}:${l.port}/${l.protocol} -> ${rm.address}:${rm.port}/${rm.protocol}`;
      s.relayed = l.candidateType === 'relay' || rm.candidateType === 'relay';
    }
    if (typeof selected.currentRoundTripTime === 'number') s.rttMs = Math.round(selected.currentRoundTripTime * 1000);
    if (typeof selected.availableOutgoingBitrate === 'number') {
      s.availableOutgoingBitrate = selected.availableOutgoingBitrate;
    }
  }
  return s;
}
