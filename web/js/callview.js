// What the call's parts show on the page, wired once by call.js:
//
// - showMedia: our own tile (the outgoing video, mic and camera flags) and the mic, camera
//   and screen buttons, from the local media's state;
// - showMesh: a tile per remote participant (made with its peer, labelled from the state
//   it tells us, highlighted while it says it speaks, showing its stream, its
//   connection's trouble and quality), the people count, the chat log, and the
//   `peerFailed` notice naming whom we can't reach.
//
// It only listens and renders: no call logic, and one timer (a joining participant's tile
// goes in once connected, at the latest TILE_WAIT_MS after it came; see showMesh).

import { Tile } from './tiles.js';

/** A participant joining gets its tile once connected to us, or this long after it came. */
const TILE_WAIT_MS = 1_000;

/** @typedef {import('./media.js').Media} Media */
/** @typedef {import('./room.js').Room} Room */
/** @typedef {import('./ui.js').RoomView} RoomView */
/** @typedef {import('./notices.js').Notices} Notices */
/** @typedef {import('./hooks.js').TestHooks} TestHooks */

/**
 * Our own tile and the media buttons. Returns the tile.
 * @param {{ media: Media, view: RoomView, name: string }} o
 */
export function showMedia({ media, view, name }) {
  const selfTile = view.grid.add(new Tile({ id: null, name }));
  // Our own tile shows just the outgoing video (a stream without tracks, or with audio
  // only, would hold the page's load event forever).
  media.on('outgoing', ({ kind, track }) => {
    if (kind === 'video') selfTile.showLocal(track);
  });
  media.on('state', (s) => {
    view.setMic(s.mic, s.hasMic);
    view.setCam(s.cam);
    view.setScreen(s.screen, media.canShareScreen);
    selfTile.setMicOff(!s.mic);
    selfTile.setCamOff(!(s.cam || s.screen));
    selfTile.setScreen(s.screen);
  });
  return selfTile;
}

/**
 * The remote participants on the page. Returns `enableSound`, for a click after the
 * browser held sound back.
 * @param {{ room: Room, view: RoomView, notices: Notices, hooks: TestHooks | null }} o
 */
export function showMesh({ room, view, notices, hooks }) {
  /** @type {Set<string>} peers currently failing to connect */
  const failing = new Set();
  const count = () => view.setCount(room.peers.size + 1);

  /** @param {string} id */
  const recovered = (id) => {
    if (failing.delete(id) && failing.size === 0) notices.clear('peerFailed');
  };
  const enableSound = () => {
    for (const tile of view.grid.tiles.values()) tile.enableSound();
    notices.clear('autoplayBlocked');
  };

  room.on('joined', count);
  room.on('peerAdded', ({ id, video }) => {
    const tile = new Tile({
      id,
      name: room.stateOf(id)?.name ?? 'Joining…',
      video,
      hooks: {
        firstFrame: hooks ? () => hooks.firstFrame(id) : undefined,
        autoplayBlocked: () =>
          notices.show('autoplayBlocked', undefined, { action: { label: 'Turn on sound', run: enableSound } }),
      },
    });
    tile.setStatus('Connecting…');
    // Someone who joins after us offers to us: its tile goes into the page once the
    // connection is up. Adding a tile lays the whole page out again (tens of ms, more on a
    // machine busy with the call); done first it held up our answer to the offer that came
    // meanwhile, done at the answer it held up the ICE candidates that followed (docs/web.md,
    // "Video first"). Its stream, state and connection reach it meanwhile.
    if (room.peers.get(id)?.negotiation.is('waitOffer')) {
      view.grid.addWaiting(tile);
      setTimeout(() => view.grid.show(id), TILE_WAIT_MS);
    } else {
      view.grid.add(tile);
    }
    count();
  });
  room.on('peerRemoved', (id) => {
    view.grid.remove(id);
    recovered(id);
    count();
  });
  room.on('peerStream', ({ id, stream }) => view.grid.get(id)?.attach(stream));
  room.on('peerState', ({ id, state }) => {
    const tile = view.grid.get(id);
    if (!tile) return;
    tile.setName(state.name);
    tile.setMicOff(!state.mic);
    tile.setCamOff(!state.cam && !state.screen);
    tile.setScreen(state.screen);
  });
  room.on('peerConnection', ({ id, state }) => {
    const tile = view.grid.get(id);
    if (state === 'connected') {
      view.grid.show(id);
      tile?.setStatus(null);
      recovered(id);
    } else if (state === 'disconnected') {
      tile?.setStatus('Reconnecting…');
    } else if (state === 'failed') {
      tile?.setStatus('Connection failed, retrying…');
    }
  });
  room.on('peerFailed', ({ id }) => {
    failing.add(id);
    view.grid.get(id)?.setStatus('Can’t connect, retrying…');
    const names = [...failing].map((p) => room.stateOf(p)?.name || 'someone');
    notices.show(
      'peerFailed',
      `Can’t connect to ${names.join(', ')}. Still trying… (a firewall may block direct connections; a TURN server helps)`,
    );
  });
  room.on('peerRelayed', ({ id, relayed }) => view.grid.get(id)?.setRelayed(relayed));
  room.on('peerQuality', ({ id, quality }) => view.grid.get(id)?.setQuality(quality));
  room.on('peerSpeaking', ({ id, on }) => view.grid.get(id)?.setSpeaking(on));
  room.on('chat', (msg) => view.addChat({ name: msg.name, text: msg.text, at: msg.at, self: msg.from === null }));

  return { enableSound };
}
