// Local media: the camera, the microphone, the screen, and the devices behind them.
//
// - `start` asks for camera and microphone and falls back step by step when one is
//   denied or missing: both -> audio only (or video only) -> receive only, and says which
//   problems it met so the page can tell the user in words;
// - mute keeps the microphone track (disabled, it sends silence); camera off stops the
//   camera (its light goes out) and sends no video;
// - switching devices and screen sharing change the *outgoing* track; the mesh swaps it
//   into every peer connection (replaceTrack), no renegotiation needed;
// - a level meter (Web Audio analyser) for the lobby meter and the speaking highlight.
//
// No DOM apart from reading media devices.

import { audioConstraints, getUserMediaLoose, videoConstraints } from './boot.js';
import { Emitter } from './emitter.js';

/** @typedef {import('./boot.js').EarlyAsk} EarlyAsk */

/** @typedef {'audio' | 'video'} Kind */

/**
 * A problem met while getting media, named for the notice shown to the user.
 * @typedef {'cameraDenied' | 'noCamera' | 'cameraBusy' | 'micDenied' | 'noMic' | 'micBusy' | 'insecureContext'} MediaProblem
 */

/**
 * @typedef {object} MediaState
 * @property {boolean} mic  microphone on (a live, enabled track)
 * @property {boolean} cam  camera on
 * @property {boolean} screen  sharing the screen
 * @property {boolean} hasMic  a microphone track exists (muted or not)
 */

/**
 * @typedef {object} MediaEvents
 * @property {{ kind: Kind, track: MediaStreamTrack | null }} outgoing  send this instead
 * @property {MediaState} state
 * @property {void} devices  the device list changed
 * @property {MediaProblem} problem
 */

/**
 * @typedef {object} DeviceChoice
 * @property {string | null} [cameraId]
 * @property {string | null} [micId]
 */

/** @extends {Emitter<MediaEvents>} */
export class Media extends Emitter {
  /**
   * @param {{ early?: EarlyAsk | null, stream?: MediaStream | null, meterDelayMs?: number }} [opts]
   *   early: a getUserMedia call made as the page started (early.js); the first ask for the
   *   same thing takes its answer. stream: the stream to use as `stream` (the one the
   *   prelude's offers announced our tracks in; early.js). meterDelayMs: the level meter is
   *   made no sooner than this after the microphone starts (a call: not while it joins)
   */
  constructor(opts = {}) {
    super();
    this.meterDelayMs = opts.meterDelayMs ?? 0;
    /** @type {EarlyAsk | null} */
    this.early = opts.early ?? null;
    /** What the own tile shows: the microphone and the outgoing video. */
    this.stream = opts.stream ?? new MediaStream();
    /** @type {MediaStreamTrack | null} the microphone; muted = disabled */
    this.micTrack = null;
    /** @type {MediaStreamTrack | null} */
    this.camTrack = null;
    /** @type {MediaStreamTrack | null} */
    this.screenTrack = null;
    /** @type {string | null} */
    this.cameraId = null;
    /** @type {string | null} */
    this.micId = null;
    /** @type {AudioContext | null} */
    this.audioCtx = null;
    /** @type {AnalyserNode | null} */
    this.analyser = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.source = null;
    /** @type {Float32Array<ArrayBuffer> | null} */
    this.samples = null;
    /** @type {MediaStreamTrack | null} the microphone the meter is (to be) made for */
    this.meterTrack = null;
    this.meterPending = false;
    this.supported = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
    if (this.supported) {
      navigator.mediaDevices.addEventListener('devicechange', () => this.emit('devices', undefined));
    }
  }

  /** @returns {MediaState} */
  get state() {
    return {
      mic: !!this.micTrack?.enabled,
      cam: !!this.camTrack,
      screen: !!this.screenTrack,
      hasMic: !!this.micTrack,
    };
  }

  /** The track each peer should be sent. @param {Kind} kind */
  outgoing(kind) {
    if (kind === 'audio') return this.micTrack;
    return this.screenTrack ?? this.camTrack;
  }

  /**
   * Get the camera and microphone, falling back as far as receive-only. Emits `outgoing`
   * for each track it gets (peers may exist already) and `state` at the end.
   * @param {{ audio: boolean, video: boolean, micOn?: boolean } & DeviceChoice} want
   *   micOn false: join muted (the track is disabled before anyone could hear it)
   * @returns {Promise<MediaProblem[]>} what went wrong (also emitted as `problem`)
   */
  async start(want) {
    this.cameraId = want.cameraId ?? null;
    this.micId = want.micId ?? null;
    if (!this.supported) {
      this.emit('problem', 'insecureContext');
      return ['insecureContext'];
    }
    /** @type {MediaProblem[]} */
    const problems = [];
    let audio = null;
    let video = null;
    if (want.audio && want.video) {
      try {
        const s = await this.getUserMedia({ audio: this.audioConstraints(), video: this.videoConstraints() });
        audio = s.getAudioTracks()[0] ?? null;
        video = s.getVideoTracks()[0] ?? null;
      } catch {
        // Ask separately to learn which one is the trouble.
      }
    }
    if (want.video && !video) {
      try {
        video = (await this.getUserMedia({ video: this.videoConstraints() })).getVideoTracks()[0] ?? null;
      } catch (err) {
        problems.push(problemFor('video', err));
      }
    }
    if (want.audio && !audio) {
      try {
        audio = (await this.getUserMedia({ audio: this.audioConstraints() })).getAudioTracks()[0] ?? null;
      } catch (err) {
        problems.push(problemFor('audio', err));
      }
    }
    if (audio) this.setMicTrack(audio, want.micOn ?? true);
    if (video) this.setCamTrack(video);
    for (const p of problems) this.emit('problem', p);
    this.emitState();
    return problems;
  }

  /** Mute or unmute; unmuting without a microphone asks for one. @param {boolean} on */
  async setMic(on) {
    if (on && !this.micTrack) {
      try {
        const s = await this.getUserMedia({ audio: this.audioConstraints() });
        this.setMicTrack(s.getAudioTracks()[0], true);
      } catch (err) {
        this.emit('problem', problemFor('audio', err));
      }
    } else if (this.micTrack) {
      this.micTrack.enabled = on;
    }
    this.emitState();
  }

  /** Camera on (asks for it) or off (stops it). @param {boolean} on */
  async setCam(on) {
    if (on && !this.camTrack) {
      try {
        const s = await this.getUserMedia({ video: this.videoConstraints() });
        this.setCamTrack(s.getVideoTracks()[0]);
      } catch (err) {
        this.emit('problem', problemFor('video', err));
      }
    } else if (!on && this.camTrack) {
      const old = this.camTrack;
      this.camTrack = null;
      if (!this.screenTrack) this.stream.removeTrack(old);
      old.stop();
      if (!this.screenTrack) this.emit('outgoing', { kind: 'video', track: null });
    }
    this.emitState();
  }

  /** @param {string} deviceId */
  async switchCamera(deviceId) {
    this.cameraId = deviceId;
    if (!this.camTrack) return; // used the next time the camera is turned on
    try {
      const s = await this.getUserMedia({ video: this.videoConstraints() });
      this.setCamTrack(s.getVideoTracks()[0]);
    } catch (err) {
      this.emit('problem', problemFor('video', err));
    }
    this.emitState();
  }

  /** @param {string} deviceId */
  async switchMic(deviceId) {
    this.micId = deviceId;
    if (!this.micTrack) return;
    try {
      const s = await this.getUserMedia({ audio: this.audioConstraints() });
      // Muted or not as the microphone it replaces (muted if that one ended meanwhile).
      this.setMicTrack(s.getAudioTracks()[0], this.micTrack?.enabled ?? false);
    } catch (err) {
      this.emit('problem', problemFor('audio', err));
    }
    this.emitState();
  }

  get canShareScreen() {
    return !!(navigator.mediaDevices && 'getDisplayMedia' in navigator.mediaDevices);
  }

  /** Share a screen or window; false when the user cancelled or it is unavailable. */
  async startScreen() {
    if (this.screenTrack || !this.canShareScreen) return !!this.screenTrack;
    let track;
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
      track = s.getVideoTracks()[0];
    } catch {
      return false; // cancelled in the picker, or refused
    }
    if (!track) return false;
    track.contentHint = 'detail'; // keep text sharp: drop frames before resolution
    track.addEventListener('ended', () => this.stopScreen());
    this.screenTrack = track;
    if (this.camTrack) this.stream.removeTrack(this.camTrack);
    this.stream.addTrack(track);
    this.emit('outgoing', { kind: 'video', track });
    this.emitState();
    return true;
  }

  /** Stop sharing: back to the camera (if it is on). */
  stopScreen() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    this.stream.removeTrack(track);
    track.stop();
    if (this.camTrack) this.stream.addTrack(this.camTrack);
    this.emit('outgoing', { kind: 'video', track: this.camTrack });
    this.emitState();
  }

  /** @returns {Promise<{ cameras: MediaDeviceInfo[], mics: MediaDeviceInfo[] }>} */
  async devices() {
    if (!this.supported) return { cameras: [], mics: [] };
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: all.filter((d) => d.kind === 'videoinput'),
      mics: all.filter((d) => d.kind === 'audioinput'),
    };
  }

  /** The id of the device a live track comes from. @param {Kind} kind */
  currentDeviceId(kind) {
    const track = kind === 'audio' ? this.micTrack : this.camTrack;
    return track?.getSettings().deviceId ?? (kind === 'audio' ? this.micId : this.cameraId);
  }

  /** Microphone level now, 0..1 (RMS, scaled so speech reaches the upper half). */
  level() {
    const a = this.analyser;
    const buf = this.samples;
    if (!a || !buf || !this.micTrack || !this.micTrack.enabled) return 0;
    a.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const rms = Math.sqrt(sum / buf.length);
    return Math.min(1, rms * 5);
  }

  /** Browsers start audio contexts suspended until a user gesture; call on one. */
  resumeAudio() {
    if (this.audioCtx && this.audioCtx.state === 'suspended') void this.audioCtx.resume();
  }

  /** Release every device. */
  stop() {
    this.dropEarly();
    for (const t of [this.micTrack, this.camTrack, this.screenTrack]) t?.stop();
    this.micTrack = this.camTrack = this.screenTrack = null;
    for (const t of this.stream.getTracks()) this.stream.removeTrack(t);
    this.meterTrack = null;
    this.source?.disconnect();
    void this.audioCtx?.close();
    this.audioCtx = null;
    this.analyser = null;
  }

  // ------------------------------------------------------------------ internals

  /**
   * Ask for media. The ask made as the page started (early.js) answers the first ask for
   * the same constraints; any other goes to the browser.
   * @param {MediaStreamConstraints} c
   */
  async getUserMedia(c) {
    const early = this.early;
    if (early && JSON.stringify(early.constraints) === JSON.stringify(c)) {
      this.early = null;
      const r = await early.result;
      if ('stream' in r) return r.stream;
      throw r.error;
    }
    return getUserMediaLoose(c);
  }

  /** An early ask nobody took: release what it got. */
  dropEarly() {
    const early = this.early;
    this.early = null;
    void early?.result.then((r) => {
      if ('stream' in r) for (const t of r.stream.getTracks()) t.stop();
    });
  }

  audioConstraints() {
    return audioConstraints(this.micId);
  }

  videoConstraints() {
    return videoConstraints(this.cameraId);
  }

  /** Use this microphone track (enabled: `on`) and send it. @param {MediaStreamTrack} track @param {boolean} on */
  setMicTrack(track, on) {
    const old = this.micTrack;
    if (old) {
      this.stream.removeTrack(old);
      old.stop();
    }
    this.micTrack = track;
    track.enabled = on;
    this.stream.addTrack(track);
    track.addEventListener('ended', () => {
      if (this.micTrack !== track) return;
      this.micTrack = null;
      this.stream.removeTrack(track);
      this.emit('outgoing', { kind: 'audio', track: null });
      this.emitState();
    });
    this.meter(track);
    this.emit('outgoing', { kind: 'audio', track });
  }

  /** @param {MediaStreamTrack} track */
  setCamTrack(track) {
    const old = this.camTrack;
    this.camTrack = track;
    if (old) {
      this.stream.removeTrack(old);
      old.stop();
    }
    track.addEventListener('ended', () => {
      // Unplugged, or revoked: same as turning it off.
      if (this.camTrack === track) void this.setCam(false);
    });
    if (!this.screenTrack) {
      this.stream.addTrack(track);
      this.emit('outgoing', { kind: 'video', track });
    }
  }

  /**
   * Measure this microphone's level (level()). The Web Audio graph is made once the page is
   * idle, and no sooner than meterDelayMs: making an AudioContext waits on the audio device
   * (tens of ms on the main thread, 70 ms on a busy machine), which would otherwise hold up
   * a join's offers, answers or first frames.
   * @param {MediaStreamTrack} track
   */
  meter(track) {
    this.meterTrack = track;
    if (this.meterPending) return;
    this.meterPending = true;
    const build = () => {
      this.meterPending = false;
      const t = this.meterTrack;
      if (!t || t !== this.micTrack || t.readyState !== 'live') return;
      try {
        // 'playback': larger audio buffers, so the audio thread wakes up less often; a
        // meter does not need low latency.
        if (!this.audioCtx) this.audioCtx = new AudioContext({ latencyHint: 'playback' });
        this.source?.disconnect();
        this.analyser = this.audioCtx.createAnalyser();
        this.analyser.fftSize = 1024;
        this.analyser.smoothingTimeConstant = 0.3;
        this.samples = new Float32Array(this.analyser.fftSize);
        this.source = this.audioCtx.createMediaStreamSource(new MediaStream([t]));
        this.source.connect(this.analyser);
      } catch {
        this.analyser = null; // no Web Audio: no meter, nothing else lost
      }
    };
    const whenIdle = () => {
      if ('requestIdleCallback' in window) requestIdleCallback(build, { timeout: 2_000 });
      else setTimeout(build, 500);
    };
    if (this.meterDelayMs > 0) setTimeout(whenIdle, this.meterDelayMs);
    else whenIdle();
  }

  emitState() {
    this.emit('state', this.state);
  }
}

/**
 * @param {Kind} kind
 * @param {unknown} err
 * @returns {MediaProblem}
 */
function problemFor(kind, err) {
  const name = err instanceof DOMException || err instanceof Error ? err.name : '';
  const video = kind === 'video';
  if (name === 'NotAllowedError' || name === 'SecurityError') return video ? 'cameraDenied' : 'micDenied';
  if (name === 'NotReadableError' || name === 'AbortError') return video ? 'cameraBusy' : 'micBusy';
  return video ? 'noCamera' : 'noMic';
}
