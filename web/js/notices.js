// The notice bar (#notice): one line telling the person, in words, what went wrong or
// what happened. Several can be active; the latest is shown and `data-kind` names it (the
// browser tests read it). Every kind's words live in NOTICES below.

import { byId } from './dom.js';
import { icons } from './icons.js';

/**
 * @typedef {'error' | 'warn' | 'info'} Tone
 * @typedef {object} NoticeOptions
 * @property {Tone} [tone]
 * @property {number} [timeoutMs]  hide after this long (0: until cleared or dismissed)
 * @property {{ label: string, run: () => void }} [action]
 */

/** Words and tone for each notice kind; `text` can be overridden when shown. */
/** @type {Record<string, { text: string, tone: Tone, timeoutMs: number }>} */
const NOTICES = {
  cameraDenied: {
    text: 'Camera access is blocked, so others can’t see you. Allow the camera in your browser’s site settings, then press the camera button.',
    tone: 'warn',
    timeoutMs: 0,
  },
  noCamera: { text: 'No camera found. You joined with audio only.', tone: 'warn', timeoutMs: 12_000 },
  cameraBusy: {
    text: 'Your camera is in use by another app or could not start. You joined with audio only.',
    tone: 'warn',
    timeoutMs: 12_000,
  },
  micDenied: {
    text: 'Microphone access is blocked, so others can’t hear you. Allow it in your browser’s site settings.',
    tone: 'warn',
    timeoutMs: 0,
  },
  noMic: { text: 'No microphone found. Others won’t hear you.', tone: 'warn', timeoutMs: 12_000 },
  micBusy: { text: 'Your microphone is in use by another app or could not start.', tone: 'warn', timeoutMs: 12_000 },
  insecureContext: {
    text: 'Camera and microphone need a secure (https) page. You can still watch and listen.',
    tone: 'warn',
    timeoutMs: 0,
  },
  invalidRoomId: {
    text: 'That room name can’t be used: 1 to 64 letters, digits, - or _.',
    tone: 'error',
    timeoutMs: 0,
  },
  serverUnreachable: { text: 'Can’t reach the meshcall server.', tone: 'error', timeoutMs: 0 },
  resumeFailed: {
    text: 'You were offline too long to pick up where you left; you rejoined the call.',
    tone: 'info',
    timeoutMs: 8_000,
  },
  peerFailed: { text: 'Can’t connect to someone in the call. Still trying…', tone: 'warn', timeoutMs: 0 },
  rateLimited: {
    text: 'The server is getting too many messages from you at once; some were dropped and are being retried.',
    tone: 'warn',
    timeoutMs: 8_000,
  },
  autoplayBlocked: { text: 'Your browser held back the call’s sound.', tone: 'info', timeoutMs: 0 },
  linkCopied: { text: 'Invite link copied. Send it to the people you want in the call.', tone: 'info', timeoutMs: 3_000 },
  linkNotCopied: { text: 'Couldn’t copy automatically. The invite link is the address of this page.', tone: 'warn', timeoutMs: 8_000 },
  screenUnsupported: { text: 'This browser can’t share the screen.', tone: 'info', timeoutMs: 5_000 },
  serverError: { text: 'The server refused a request.', tone: 'warn', timeoutMs: 8_000 },
};

export class Notices {
  /** @param {(kind: string) => void} onShow  called for each notice shown (test hook) */
  constructor(onShow) {
    this.el = byId('notice', HTMLDivElement);
    this.textEl = /** @type {HTMLElement} */ (this.el.querySelector('.notice-text'));
    this.iconEl = /** @type {HTMLElement} */ (this.el.querySelector('.notice-icon'));
    this.actionEl = /** @type {HTMLButtonElement} */ (this.el.querySelector('.notice-action'));
    const closeEl = /** @type {HTMLButtonElement} */ (this.el.querySelector('.notice-close'));
    closeEl.innerHTML = icons.close;
    closeEl.addEventListener('click', () => {
      const top = this.stack[this.stack.length - 1];
      if (top) this.clear(top.kind);
    });
    this.actionEl.addEventListener('click', () => this.stack[this.stack.length - 1]?.action?.run());
    this.onShow = onShow;
    /** Active notices, most recent last; the last one is on screen. */
    /** @type {{ kind: string, text: string, tone: Tone, action?: NoticeOptions['action'], timer?: ReturnType<typeof setTimeout> }[]} */
    this.stack = [];
  }

  /**
   * Show (or update) a notice of this kind.
   * @param {string} kind
   * @param {string} [text]
   * @param {NoticeOptions} [opts]
   */
  show(kind, text, opts = {}) {
    const base = NOTICES[kind] ?? NOTICES.serverError;
    const existing = this.stack.find((n) => n.kind === kind);
    if (existing) clearTimeout(existing.timer);
    else this.onShow(kind);
    this.stack = this.stack.filter((n) => n.kind !== kind);
    /** @type {typeof this.stack[number]} */
    const item = { kind, text: text ?? base.text, tone: opts.tone ?? base.tone, action: opts.action };
    const timeoutMs = opts.timeoutMs ?? base.timeoutMs;
    if (timeoutMs > 0) item.timer = setTimeout(() => this.clear(kind), timeoutMs);
    this.stack.push(item);
    this.render();
  }

  /** Only the words change (a countdown); no new notice is counted. @param {string} kind @param {string} text */
  update(kind, text) {
    const n = this.stack.find((x) => x.kind === kind);
    if (!n) return;
    n.text = text;
    if (this.stack[this.stack.length - 1] === n) this.textEl.textContent = text;
  }

  /** @param {string} kind */
  clear(kind) {
    const n = this.stack.find((x) => x.kind === kind);
    if (!n) return;
    clearTimeout(n.timer);
    this.stack = this.stack.filter((x) => x !== n);
    this.render();
  }

  /** Clear every notice. */
  clearAll() {
    for (const n of this.stack) clearTimeout(n.timer);
    this.stack = [];
    this.render();
  }

  /** @param {string} kind */
  has(kind) {
    return this.stack.some((n) => n.kind === kind);
  }

  render() {
    const top = this.stack[this.stack.length - 1];
    if (!top) {
      this.el.hidden = true;
      delete this.el.dataset.kind;
      return;
    }
    this.el.hidden = false;
    this.el.dataset.kind = top.kind;
    this.el.dataset.tone = top.tone;
    this.el.setAttribute('role', top.tone === 'error' ? 'alert' : 'status');
    this.iconEl.innerHTML = top.tone === 'info' ? icons.info : icons.alert;
    this.textEl.textContent = top.text;
    this.actionEl.hidden = !top.action;
    this.actionEl.textContent = top.action?.label ?? '';
  }
}
