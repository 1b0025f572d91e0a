// What the call page tells the person in words about its connections: the camera and
// microphone problems met while starting, the signalling socket's trouble (with a countdown
// to the next attempt and "Retry now"), and the words of the card shown when a room can't be
// joined. Every notice's own words are in notices.js.

/** @typedef {import('./notices.js').Notices} Notices */
/** @typedef {import('./media.js').MediaProblem} MediaProblem */
/** @typedef {import('./signaling.js').Signaling} Signaling */
/** @typedef {import('./protocol.js').ErrorMsg} ErrorMsg */

/**
 * One notice for what went wrong while getting the camera and microphone.
 * @param {Notices} notices
 * @param {MediaProblem[]} problems
 */
export function explainProblems(notices, problems) {
  if (problems.length === 0) return;
  const cam = problems.find((p) => p === 'cameraDenied' || p === 'noCamera' || p === 'cameraBusy');
  const mic = problems.find((p) => p === 'micDenied' || p === 'noMic' || p === 'micBusy');
  if (problems.includes('insecureContext')) {
    notices.show('insecureContext');
  } else if (cam && mic) {
    const denied = cam === 'cameraDenied' || mic === 'micDenied';
    notices.show(
      cam,
      denied
        ? 'Camera and microphone are blocked: you can watch and listen, but others can’t see or hear you. Allow them in your browser’s site settings.'
        : 'No camera or microphone available: you can watch and listen, but others can’t see or hear you.',
    );
  } else if (cam) {
    notices.show(cam);
  } else if (mic) {
    notices.show(mic);
  }
}

/**
 * The signalling socket's trouble as notices: `serverUnreachable` with a countdown while
 * waiting to reconnect (not for a blip the first retry fixes), `resumeFailed`, and the
 * refusals worth saying (`rateLimited`, `internal`).
 * @param {Signaling} signaling
 * @param {Notices} notices
 */
export function reportSignaling(signaling, notices) {
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let countdown;
  signaling.on('status', (s) => {
    clearInterval(countdown);
    if (s.state === 'joined' || s.state === 'closed') {
      notices.clear('serverUnreachable');
      return;
    }
    if (s.state !== 'waiting' || s.retryAt === null) return;
    // A blip that the first retry fixes is not worth a message.
    if (s.everJoined && s.failures < 2) return;
    const retryAt = s.retryAt;
    const words = () => {
      const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      const lead = s.everJoined
        ? 'Lost the connection to the meshcall server; the call goes on for now.'
        : 'Can’t reach the meshcall server.';
      return secs > 0 ? `${lead} Reconnecting in ${secs} s…` : `${lead} Reconnecting…`;
    };
    if (!notices.has('serverUnreachable')) {
      notices.show('serverUnreachable', words(), {
        action: { label: 'Retry now', run: () => signaling.reconnectNow() },
      });
    } else {
      notices.update('serverUnreachable', words());
    }
    countdown = setInterval(() => notices.update('serverUnreachable', words()), 500);
  });
  signaling.on('resumeFailed', () => notices.show('resumeFailed'));
  signaling.on('error', (err) => {
    if (err.code === 'rateLimited') notices.show('rateLimited');
    else if (err.code === 'internal') notices.show('serverError', 'The server had a problem with a request; retrying.');
    else if (err.code !== 'peerNotFound') console.warn(`meshcall: server refused a message: ${err.code}`);
  });
}

/**
 * The card for a room that can't be joined (`roomFull`, `invalidRoomId` from the service).
 * @param {ErrorMsg} err
 * @returns {{ kind: string, title: string, text: string, canRejoin: boolean, rejoinLabel: string }}
 */
export function refusalCard(err) {
  if (err.code === 'roomFull') {
    return {
      kind: 'roomFull',
      title: 'This room is full',
      text: 'Every seat in this call is taken (a mesh call stays small so everyone’s upload keeps up). Try again later, or start a new room.',
      canRejoin: true,
      rejoinLabel: 'Try again',
    };
  }
  return { kind: err.code, title: 'Can’t join this room', text: err.message, canRejoin: false, rejoinLabel: '' };
}
