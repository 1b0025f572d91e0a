// Entry point: show the lobby at `/` or the call at `/r/<room>` (the server serves this same
// page for both), loading only that page's modules. The camera and the settings were asked
// for already (index.html's inline boot script; early.js hands them over); on a call page
// the call's modules (preloaded by the boot script) run once its prelude has made the first
// offers (`appMayLoad`). The test hooks are installed first when a test asked for them
// (hooks.js).

import { isRoomId, roomPath } from './boot.js';
import { appMayLoad } from './early.js';
import { Notices } from './notices.js';

/** A test asked for the hooks (set before the app's scripts ran). */
const testing = /** @type {{ __meshcallTestHooks?: unknown }} */ (window).__meshcallTestHooks === true;
const hooks = testing ? (await import('./hooks.js')).installHooks() : null;
const notices = new Notices(hooks ? (kind) => hooks.notice(kind) : () => {});

const path = roomPath(location.pathname);
const roomId = path?.id ?? null;

if (roomId !== null && isRoomId(roomId)) {
  await appMayLoad;
  const { startCall } = await import('./call.js');
  startCall({ roomId, notices, hooks });
} else {
  if (path) {
    notices.show('invalidRoomId', `“${roomId ?? path.raw}” can’t be a room name: use 1 to 64 letters, digits, - or _.`);
  }
  const { startLobby } = await import('./lobby.js');
  startLobby({ notices });
}
