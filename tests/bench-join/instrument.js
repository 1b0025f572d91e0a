// Runs in every page of the join-speed benchmark before the page's own scripts
// (context.addInitScript), the same for meshcall's app and the reference page, so neither
// needs test hooks. It wraps getUserMedia, WebSocket and RTCPeerConnection and watches
// <video> elements, and records in `window.__bench` when things happen (epoch ms from
// Date.now(): the same clock as the harness's, in every renderer process):
//
//   gum[]      {start, end, ok}: each getUserMedia call and when it settled
//   ws[]       {t, ev}: 'new' (constructor), 'open', 'close'; 'out' frames (action, to, sdp
//              type or candidate) and 'in' frames (type, from, sdp type or candidate,
//              participants of `joined`)
//   pcs[]      one per RTCPeerConnection: created; sld[]/srd[] {t, type, ufrag} when
//              setLocalDescription/setRemoteDescription resolved; ice ('connected' or
//              'completed' first seen), connected (connectionState 'connected' first seen),
//              track (first remote video track), frame (first remote video frame painted)
//   joinedAt   first incoming frame of type `joined`
//
// "Frame painted": the first requestVideoFrameCallback of any <video> whose srcObject holds
// a video track received on that peer connection (the track event's track); every video
// element given a srcObject is watched until it paints a received track (or holds only
// tracks of our own getUserMedia). Nothing here polls.
//
// Each change of what the harness waits for (joined, camera started, a peer's first frame
// painted, the load event) is also told on the console (`console.debug('__bench:status
// {...}')`): the harness waits on the page being measured through that, since any
// page.evaluate or waitForFunction would make Playwright compile its injected script
// (80-100 ms of that page's main thread) in the middle of the join.

export function instrument() {
  /** @type {any} */
  const w = window;
  if (w.__bench) return;
  const now = () => Date.now();
  const B = { gum: /** @type {any[]} */ ([]), ws: /** @type {any[]} */ ([]), pcs: /** @type {any[]} */ ([]), joinedAt: 0, errors: /** @type {string[]} */ ([]) };
  w.__bench = B;
  let told = '';
  const status = () => {
    const now = JSON.stringify({
      joined: B.joinedAt > 0,
      camera: B.gum.some((/** @type {any} */ g) => g.ok),
      frames: B.pcs.filter((/** @type {any} */ pc) => pc.frame).length,
      loaded: document.readyState === 'complete',
    });
    if (now !== told) console.debug(`__bench:status ${(told = now)}`);
  };
  window.addEventListener('load', () => setTimeout(status, 0));
  window.addEventListener('error', (e) => B.errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => B.errors.push(`rejection: ${String(e.reason)}`));

  /** @param {string | undefined | null} sdp */
  const ufrag = (sdp) => (/a=ice-ufrag:(\S+)/.exec(sdp ?? '') ?? [])[1] ?? null;
  /** What a signal payload carries: an SDP type, a candidate, or something else. @param {any} data */
  const kind = (data) => {
    /** @type {any} */
    let found = null;
    const seen = new Set();
    /** @param {any} v @param {number} depth */
    const walk = (v, depth) => {
      if (found || !v || typeof v !== 'object' || depth > 4 || seen.has(v)) return;
      seen.add(v);
      if (typeof v.sdp === 'string' && (v.type === 'offer' || v.type === 'answer')) { found = { sdp: v.type, ufrag: ufrag(v.sdp) }; return; }
      if (typeof v.candidate === 'string') { found = { candidate: true }; return; }
      for (const k of Object.keys(v)) walk(v[k], depth + 1);
    };
    walk(data, 0);
    return found ?? {};
  };

  // getUserMedia
  const md = navigator.mediaDevices;
  /** @type {WeakSet<MediaStreamTrack>} */
  const ownTracks = new WeakSet();
  if (md && md.getUserMedia) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = async (c) => {
      const rec = { start: now(), end: 0, ok: false, video: !!(c && c.video), audio: !!(c && c.audio) };
      B.gum.push(rec);
      try {
        const s = await gum(c);
        for (const t of s.getTracks()) ownTracks.add(t);
        rec.ok = true;
        status();
        return s;
      } finally {
        rec.end = now();
      }
    };
  }

  // WebSocket
  const NativeWS = window.WebSocket;
  class BenchWS extends NativeWS {
    /** @param {string | URL} url @param {string | string[]} [protocols] */
    constructor(url, protocols) {
      super(url, protocols);
      B.ws.push({ t: now(), ev: 'new' });
      this.addEventListener('open', () => B.ws.push({ t: now(), ev: 'open' }));
      this.addEventListener('close', (e) => B.ws.push({ t: now(), ev: 'close', code: e.code }));
      this.addEventListener('message', (e) => {
        const t = now();
        /** @type {any} */
        let m = null;
        try { m = typeof e.data === 'string' ? JSON.parse(e.data) : null; } catch { /* not JSON */ }
        const rec = { t, ev: 'in', type: m && typeof m === 'object' ? m.type ?? null : null, len: typeof e.data === 'string' ? e.data.length : 0 };
        if (rec.type === 'joined') {
          Object.assign(rec, { participants: Array.isArray(m.participants) ? m.participants.length : null, self: m.connectionId });
          if (!B.joinedAt) B.joinedAt = t;
          status();
        }
        if (rec.type === 'signal') Object.assign(rec, { from: m.from }, kind(m.data));
        if (rec.type === 'newParticipant') Object.assign(rec, { peer: m.participantConnectionId });
        B.ws.push(rec);
      });
    }

    /** @param {string | ArrayBufferLike | Blob | ArrayBufferView} data */
    send(data) {
      /** @type {any} */
      let m = null;
      try { m = typeof data === 'string' ? JSON.parse(data) : null; } catch { /* not JSON */ }
      const rec = { t: now(), ev: 'out', action: m && typeof m === 'object' ? m.action ?? null : null, len: typeof data === 'string' ? data.length : 0 };
      if (rec.action === 'signal') Object.assign(rec, { to: m.to }, kind(m.data));
      B.ws.push(rec);
      super.send(data);
    }
  }
  window.WebSocket = BenchWS;

  // RTCPeerConnection
  /** @type {WeakMap<MediaStreamTrack, any>} received video track -> its peer connection's record */
  const trackPc = new WeakMap();
  /** @type {RTCPeerConnection[]} every peer connection, for getStats in the CPU window */
  const pcList = [];
  Object.defineProperty(w, '__benchPcs', { value: pcList });
  const NativePC = window.RTCPeerConnection;
  class BenchPC extends NativePC {
    /** @param {RTCConfiguration} [cfg] */
    constructor(cfg) {
      super(cfg);
      const rec = { created: now(), sld: /** @type {any[]} */ ([]), srd: /** @type {any[]} */ ([]), ice: 0, connected: 0, track: 0, frame: 0, states: /** @type {any[]} */ ([]) };
      B.pcs.push(rec);
      pcList.push(this);
      Object.defineProperty(this, '__rec', { value: rec });
      this.addEventListener('iceconnectionstatechange', () => {
        const s = this.iceConnectionState;
        rec.states.push({ t: now(), ice: s });
        if (!rec.ice && (s === 'connected' || s === 'completed')) rec.ice = now();
      });
      this.addEventListener('connectionstatechange', () => {
        const s = this.connectionState;
        rec.states.push({ t: now(), pc: s });
        if (!rec.connected && s === 'connected') rec.connected = now();
      });
      this.addEventListener('track', (e) => {
        if (e.track.kind !== 'video') return;
        trackPc.set(e.track, rec);
        if (!rec.track) rec.track = now();
      });
    }

    /** @param {RTCLocalSessionDescriptionInit} [d] */
    async setLocalDescription(d) {
      const r = await super.setLocalDescription(d);
      const ld = this.localDescription;
      /** @type {any} */ (this).__rec.sld.push({ t: now(), type: ld ? ld.type : null, ufrag: ufrag(ld && ld.sdp) });
      return r;
    }

    /** @param {RTCSessionDescriptionInit} d */
    async setRemoteDescription(d) {
      const r = await super.setRemoteDescription(d);
      /** @type {any} */ (this).__rec.srd.push({ t: now(), type: d ? d.type : null, ufrag: ufrag(d && d.sdp) });
      return r;
    }
  }
  window.RTCPeerConnection = BenchPC;

  // <video>: first painted frame of a received track.
  const desc = /** @type {PropertyDescriptor} */ (Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'srcObject'));
  /** @type {WeakMap<HTMLVideoElement, number>} */
  const watching = new WeakMap();
  /** @param {HTMLVideoElement} v */
  const watch = (v) => {
    if (watching.has(v) || !('requestVideoFrameCallback' in v)) return;
    const id = v.requestVideoFrameCallback(() => {
      watching.delete(v);
      const src = v.srcObject;
      const tracks = src instanceof MediaStream ? src.getVideoTracks() : [];
      const t = now();
      let remote = false;
      for (const tr of tracks) {
        const rec = trackPc.get(tr);
        if (rec) { remote = true; if (!rec.frame) rec.frame = t; }
      }
      if (remote) status();
      // Keep watching an element that has shown none of our received tracks yet, unless all
      // it holds is our own camera.
      if (!remote && !(tracks.length && tracks.every((tr) => ownTracks.has(tr)))) watch(v);
    });
    watching.set(v, id);
  };
  Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', {
    configurable: true,
    enumerable: desc.enumerable,
    get() { return desc.get?.call(this); },
    /** @param {MediaProvider | null} s */
    set(s) {
      desc.set?.call(this, s);
      if (this instanceof HTMLVideoElement && s) {
        const id = watching.get(this);
        if (id !== undefined) { this.cancelVideoFrameCallback(id); watching.delete(this); }
        watch(this);
      }
    },
  });
}
