// Entry point: install the test hooks, then show the lobby at `/` or the call at
// `/r/<room>` (the server serves this same page for both).

import { startCall } from './call.js';
import { T, installHooks } from './hooks.js';
import { startLobby } from './lobby.js';
import { isRoomId } from './protocol.js';
import { Notices } from './notices.js';

installHooks();
const notices = new Notices((kind) => T.notices.push(kind));

const match = /^\/r\/([^/]+)\/?$/.exec(location.pathname);
/** @type {string | null} */
let roomId = null;
if (match) {
  try {
    roomId = decodeURIComponent(match[1]);
  } catch {
    roomId = null;
  }
}

if (roomId !== null && isRoomId(roomId)) {
  void startCall({ roomId, notices });
} else {
  if (match) {
    notices.show('invalidRoomId', `“${roomId ?? match[1]}” can’t be a room name: use 1 to 64 letters, digits, - or _.`);
  }
  startLobby({ notices });
}
