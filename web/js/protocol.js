// The wire: what the signalling service and the peers say to each other.
//
// Two channels carry messages:
//  - the signalling WebSocket (JSON objects; the client's are tagged by `action`,
//    the service's by `type`; see README.md "Protocol" and docs/protocol.md);
//  - one RTCDataChannel per peer (JSON objects tagged by `t`), for chat and for the
//    sender's state (name, microphone, camera, screen sharing).
// This module holds their types and the checks that turn untrusted text into them.
// It does no IO.

// The room-id rule and the settings' parsing are boot.js's (the boot script uses them
// before any module loads): ROOM_ID_RE, isRoomId, parseConfig.

// ---------------------------------------------------------------- client -> service

/**
 * @typedef {{ action: 'joinRoom', roomId: string }} JoinRoom
 * @typedef {{ action: 'resume', token: string }} Resume
 * @typedef {{ action: 'signal', to: string, data: SignalData }} SignalOut
 * @typedef {{ action: 'leaveRoom' }} LeaveRoom
 * @typedef {{ action: 'ping' }} Ping
 * @typedef {JoinRoom | Resume | SignalOut | LeaveRoom | Ping} ClientMessage
 */

// ---------------------------------------------------------------- service -> client

/**
 * @typedef {object} Joined
 * @property {'joined'} type
 * @property {string} roomId
 * @property {string} connectionId  our own id
 * @property {string[]} participants  the ids that were already in the room
 * @property {RTCIceServer[]} iceServers
 * @property {string | undefined} resumeToken  opaque; send it back in `resume` after a drop
 * @property {boolean} resumed  true when this answers a `resume` (same id and room)
 */
/**
 * @typedef {{ type: 'newParticipant', participantConnectionId: string }} NewParticipant
 * @typedef {{ type: 'participantLeft', participantConnectionId: string }} ParticipantLeft
 * @typedef {{ type: 'signal', from: string, data: SignalData }} SignalIn
 * @typedef {{ type: 'pong' }} Pong
 * @typedef {{ type: 'error', code: string, message: string, peerId: string | undefined }} ErrorMsg
 *   `peerId` is the addressee of a refused `signal` when the service names it (see peerOf).
 * @typedef {Joined | NewParticipant | ParticipantLeft | SignalIn | Pong | ErrorMsg} ServerMessage
 */

/**
 * What one participant sends another through `signal`:
 * - a session description; `round` numbers the sender's offers, and an answer carries the
 *   round of the offer it answers, so a late answer to a replaced offer can be dropped;
 * - one trickled ICE candidate;
 * - a hello with the sender's state, sent once when the peer is made, so names show
 *   before media connects;
 * - `requestOffer`: "make an offer, with an ICE restart" (the polite side sends it when
 *   it must not offer itself, see peer.js).
 * @typedef {{ description: RTCSessionDescriptionInit, round?: number } | { candidate: RTCIceCandidateInit } | { state: PeerState } | { requestOffer: true }} SignalData
 */

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** @param {unknown} v @returns {v is string} */
function isString(v) {
  return typeof v === 'string';
}

/**
 * Parse one text frame from the service. Frames that are not one of our messages
 * (for example the verbatim text `sendMsgToRoom` relays) give null.
 * @param {string} text
 * @returns {ServerMessage | null}
 */
export function parseServerMessage(text) {
  /** @type {unknown} */
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(v) || !isString(v.type)) return null;
  switch (v.type) {
    case 'joined': {
      if (!isString(v.roomId) || !isString(v.connectionId)) return null;
      const participants = Array.isArray(v.participants) ? v.participants.filter(isString) : [];
      const iceServers = Array.isArray(v.iceServers) ? v.iceServers.filter(isIceServer) : [];
      return {
        type: 'joined',
        roomId: v.roomId,
        connectionId: v.connectionId,
        participants,
        iceServers,
        resumeToken: isString(v.resumeToken) ? v.resumeToken : undefined,
        resumed: v.resumed === true,
      };
    }
    case 'newParticipant':
    case 'participantLeft':
      if (!isString(v.participantConnectionId)) return null;
      return { type: v.type, participantConnectionId: v.participantConnectionId };
    case 'signal': {
      if (!isString(v.from)) return null;
      const data = parseSignalData(v.data);
      return data ? { type: 'signal', from: v.from, data } : null;
    }
    case 'pong':
      return { type: 'pong' };
    case 'error': {
      const code = isString(v.code) ? v.code : 'unknown';
      const message = isString(v.message) ? v.message : '';
      return { type: 'error', code, message, peerId: peerOf(v, message) };
    }
    default:
      return null;
  }
}

/**
 * The addressee of a refused `signal`. A structured field wins; otherwise the id is read
 * from the service's sentence ("no participant <id> in room <room>").
 * @param {Record<string, unknown>} v
 * @param {string} message
 * @returns {string | undefined}
 */
function peerOf(v, message) {
  for (const key of ['to', 'peerId', 'participantConnectionId']) {
    const field = v[key];
    if (isString(field)) return field;
  }
  const m = /participant (\S+) in room/.exec(message);
  return m ? m[1] : undefined;
}

/** @param {unknown} v @returns {v is RTCIceServer} */
function isIceServer(v) {
  if (!isObject(v)) return false;
  const urls = v.urls;
  return isString(urls) || (Array.isArray(urls) && urls.every(isString));
}

/**
 * @param {unknown} v
 * @returns {SignalData | null}
 */
export function parseSignalData(v) {
  if (!isObject(v)) return null;
  const d = v.description;
  if (isObject(d)) {
    const type = d.type;
    if (type !== 'offer' && type !== 'answer' && type !== 'pranswer' && type !== 'rollback') {
      return null;
    }
    /** @type {RTCSessionDescriptionInit} */
    const description = { type };
    if (isString(d.sdp)) description.sdp = d.sdp;
    const round = v.round;
    return Number.isSafeInteger(round) ? { description, round: /** @type {number} */ (round) } : { description };
  }
  const c = v.candidate;
  if (isObject(c) && isString(c.candidate)) {
    /** @type {RTCIceCandidateInit} */
    const candidate = { candidate: c.candidate };
    if (isString(c.sdpMid)) candidate.sdpMid = c.sdpMid;
    if (typeof c.sdpMLineIndex === 'number') candidate.sdpMLineIndex = c.sdpMLineIndex;
    if (isString(c.usernameFragment)) candidate.usernameFragment = c.usernameFragment;
    return { candidate };
  }
  if (isObject(v.state)) return { state: parseState(v.state) };
  if (v.requestOffer === true) return { requestOffer: true };
  return null;
}

/**
 * A peer's state from untrusted JSON, with safe defaults.
 * @param {Record<string, unknown>} v
 * @returns {PeerState}
 */
function parseState(v) {
  return {
    name: isString(v.name) ? v.name.slice(0, MAX_NAME_CHARS) : '',
    mic: v.mic !== false,
    cam: v.cam !== false,
    screen: v.screen === true,
  };
}

// ---------------------------------------------------------------- peer <-> peer (data channel)

/** Longest chat message we send or show, in characters. */
export const MAX_CHAT_CHARS = 2000;
/** Longest display name we send or show, in characters. */
export const MAX_NAME_CHARS = 40;

/** A display name as we use and send it: one line, spaces squeezed, at most MAX_NAME_CHARS. @param {string} name */
export function cleanName(name) {
  return name.replace(/\s+/g, ' ').trim().slice(0, MAX_NAME_CHARS);
}

/**
 * The sender's state, sent when the channel opens and on every change.
 * @typedef {object} PeerState
 * @property {string} name
 * @property {boolean} mic  microphone on (unmuted)
 * @property {boolean} cam  camera on
 * @property {boolean} screen  sharing the screen
 */
/**
 * @typedef {{ t: 'state' } & PeerState} StateMsg
 * @typedef {{ t: 'chat', text: string, at: number }} ChatMsg
 * @typedef {{ t: 'speaking', on: boolean }} SpeakingMsg  the sender started or stopped
 *   speaking (its own microphone, measured by itself; see speaking.js)
 * @typedef {StateMsg | ChatMsg | SpeakingMsg} PeerMessage
 */

/**
 * Parse one data-channel message from a peer; null for anything malformed.
 * @param {unknown} raw
 * @returns {PeerMessage | null}
 */
export function parsePeerMessage(raw) {
  if (!isString(raw)) return null;
  /** @type {unknown} */
  let v;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (!isObject(v)) return null;
  if (v.t === 'state') return { t: 'state', ...parseState(v) };
  if (v.t === 'speaking') return { t: 'speaking', on: v.on === true };
  if (v.t === 'chat' && isString(v.text) && v.text.trim() !== '') {
    return {
      t: 'chat',
      text: v.text.slice(0, MAX_CHAT_CHARS),
      at: typeof v.at === 'number' ? v.at : Date.now(),
    };
  }
  return null;
}
