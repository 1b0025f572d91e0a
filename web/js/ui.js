// The call page's DOM: the controls, the chat panel, the popovers and keyboard shortcuts,
// plus the grid (tiles.js); notices are in notices.js.
// It renders what it is told and reports what the person does through callbacks; it
// holds no call logic.

import { byId, fillSelect, setIcon } from './dom.js';
import { icons, logo } from './icons.js';
import { Grid } from './tiles.js';

/**
 * What the person does; call.js fills these in.
 * @typedef {object} RoomActions
 * @property {() => void} toggleMic
 * @property {() => void} toggleCam
 * @property {() => void} toggleScreen
 * @property {() => void} leave
 * @property {() => void} rejoin
 * @property {() => void} copyLink
 * @property {(text: string) => boolean} sendChat  false: nothing was sent
 * @property {(deviceId: string) => void} pickCamera
 * @property {(deviceId: string) => void} pickMic
 * @property {() => void} gesture  any click or key: a chance to resume audio
 */

export class RoomView {
  /** @param {{ roomId: string, actions: RoomActions }} opts */
  constructor(opts) {
    this.actions = opts.actions;
    this.root = byId('room', HTMLElement);
    this.grid = new Grid(byId('grid', HTMLDivElement));
    // Until the page is shown its tiles wait outside the document: putting a tile (its video
    // element) into the page costs the main thread tens of ms under load, while joining.
    if (this.root.hidden) this.grid.hold();
    this.btnMic = byId('btn-mic', HTMLButtonElement);
    this.btnCam = byId('btn-cam', HTMLButtonElement);
    this.btnScreen = byId('btn-screen', HTMLButtonElement);
    this.btnChat = byId('btn-chat', HTMLButtonElement);
    this.btnLeave = byId('btn-leave', HTMLButtonElement);
    this.btnCopy = byId('btn-copy-link', HTMLButtonElement);
    this.btnHelp = byId('btn-help', HTMLButtonElement);
    this.btnDevices = byId('btn-devices', HTMLButtonElement);
    this.help = byId('help', HTMLDivElement);
    this.devices = byId('devices', HTMLDivElement);
    this.cameraSelect = byId('room-camera', HTMLSelectElement);
    this.micSelect = byId('room-mic', HTMLSelectElement);
    this.chat = byId('chat', HTMLElement);
    this.chatLog = byId('chat-log', HTMLDivElement);
    this.chatEmpty = byId('chat-empty', HTMLParagraphElement);
    this.chatForm = byId('chat-form', HTMLFormElement);
    this.chatInput = byId('chat-input', HTMLTextAreaElement);
    this.chatBadge = byId('chat-badge', HTMLSpanElement);
    this.count = byId('room-count', HTMLSpanElement);
    this.ended = byId('ended', HTMLDivElement);
    this.alone = byId('alone', HTMLDivElement);
    this.unread = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.copyTimer = undefined;

    document.title = `${opts.roomId} · meshcall`;
    byId('room-name', HTMLSpanElement).textContent = opts.roomId;
    byId('room-logo', HTMLSpanElement).innerHTML = logo;
    setIcon(this.btnCopy, icons.link, 'Copy invite link');
    setIcon(this.btnHelp, icons.help);
    setIcon(this.btnDevices, icons.settings, 'Devices');
    setIcon(this.btnLeave, icons.leave, 'Leave');
    byId('chat-btn-icon', HTMLSpanElement).innerHTML = icons.chat;
    byId('chat-close', HTMLButtonElement).innerHTML = icons.close;
    byId('chat-send', HTMLButtonElement).innerHTML = icons.send;
    this.setMic(false, false);
    this.setCam(false);
    this.setScreen(false, true);

    const a = this.actions;
    this.btnMic.addEventListener('click', () => a.toggleMic());
    this.btnCam.addEventListener('click', () => a.toggleCam());
    this.btnScreen.addEventListener('click', () => a.toggleScreen());
    this.btnLeave.addEventListener('click', () => a.leave());
    this.btnCopy.addEventListener('click', () => a.copyLink());
    byId('alone-copy', HTMLButtonElement).addEventListener('click', () => a.copyLink());
    this.btnChat.addEventListener('click', () => this.toggleChat());
    byId('chat-close', HTMLButtonElement).addEventListener('click', () => this.toggleChat(false));
    this.btnHelp.addEventListener('click', () => this.togglePopover(this.help, this.btnHelp));
    this.btnDevices.addEventListener('click', () => this.togglePopover(this.devices, this.btnDevices));
    this.cameraSelect.addEventListener('change', () => a.pickCamera(this.cameraSelect.value));
    this.micSelect.addEventListener('change', () => a.pickMic(this.micSelect.value));
    byId('ended-rejoin', HTMLButtonElement).addEventListener('click', () => a.rejoin());

    this.chatForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.submitChat();
    });
    this.chatInput.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.submitChat();
      }
    });
    this.chatInput.addEventListener('input', () => this.fitChatInput());

    document.addEventListener('keydown', (ev) => this.shortcut(ev));
    document.addEventListener('pointerdown', (ev) => {
      a.gesture();
      const target = /** @type {Node} */ (ev.target);
      /** @type {[HTMLElement, HTMLButtonElement][]} */
      const popovers = [[this.help, this.btnHelp], [this.devices, this.btnDevices]];
      for (const [pop, btn] of popovers) {
        if (!pop.hidden && !pop.contains(target) && !btn.contains(target)) this.togglePopover(pop, btn, false);
      }
    });
  }

  /** Show the call page (again: nothing happens). */
  show() {
    if (!this.root.hidden) return;
    this.grid.release();
    this.root.hidden = false;
    document.body.classList.add('in-room');
    // The boot script's stage of first videos (video first): its elements are in their
    // tiles now (those of anyone not adopted go with it).
    document.getElementById('boot-stage')?.remove();
  }

  /** @param {boolean} on @param {boolean} available */
  setMic(on, available) {
    this.btnMic.setAttribute('aria-pressed', String(on));
    this.btnMic.classList.toggle('off', !on);
    this.btnMic.title = available ? (on ? 'Mute (M)' : 'Unmute (M)') : 'No microphone: click to try again';
    setIcon(this.btnMic, on ? icons.mic : icons.micOff, on ? 'Mute' : 'Unmute');
  }

  /** @param {boolean} on */
  setCam(on) {
    this.btnCam.setAttribute('aria-pressed', String(on));
    this.btnCam.classList.toggle('off', !on);
    this.btnCam.title = on ? 'Turn camera off (V)' : 'Turn camera on (V)';
    setIcon(this.btnCam, on ? icons.cam : icons.camOff, on ? 'Stop video' : 'Start video');
  }

  /** @param {boolean} on @param {boolean} supported */
  setScreen(on, supported) {
    this.btnScreen.setAttribute('aria-pressed', String(on));
    this.btnScreen.classList.toggle('active', on);
    this.btnScreen.hidden = !supported;
    this.btnScreen.title = on ? 'Stop sharing (S)' : 'Share your screen (S)';
    setIcon(this.btnScreen, icons.screen, on ? 'Stop sharing' : 'Share');
  }

  /** Our microphone level, 0..1, drawn as a fill on the mic button. @param {number} level */
  setMicLevel(level) {
    this.btnMic.style.setProperty('--level', level.toFixed(2));
  }

  /** The copy button confirms for a moment. */
  flashCopied() {
    setIcon(this.btnCopy, icons.check, 'Link copied');
    this.btnCopy.classList.add('done');
    clearTimeout(this.copyTimer);
    this.copyTimer = setTimeout(() => {
      setIcon(this.btnCopy, icons.link, 'Copy invite link');
      this.btnCopy.classList.remove('done');
    }, 2000);
  }

  /** @param {number} n */
  setCount(n) {
    this.count.textContent = n === 1 ? 'Only you' : `${n} people`;
    this.alone.hidden = n !== 1 || !this.ended.hidden;
  }

  /**
   * @param {MediaDeviceInfo[]} cameras
   * @param {MediaDeviceInfo[]} mics
   * @param {string | null} cameraId
   * @param {string | null} micId
   */
  setDevices(cameras, mics, cameraId, micId) {
    fillSelect(this.cameraSelect, cameras, cameraId, 'Camera');
    fillSelect(this.micSelect, mics, micId, 'Microphone');
  }

  /** @param {boolean} [open] */
  toggleChat(open) {
    const show = open ?? this.chat.hidden;
    this.chat.hidden = !show;
    this.btnChat.setAttribute('aria-pressed', String(show));
    this.btnChat.classList.toggle('active', show);
    this.root.classList.toggle('chat-open', show);
    if (show) {
      this.unread = 0;
      this.renderBadge();
      this.chatLog.scrollTop = this.chatLog.scrollHeight;
      this.chatInput.focus();
    }
    // The stage changed size.
    this.grid.relayout();
  }

  /**
   * @param {{ name: string, text: string, at: number, self: boolean }} msg
   */
  addChat(msg) {
    this.chatEmpty.hidden = true;
    const item = document.createElement('div');
    item.className = msg.self ? 'chat-msg chat-self' : 'chat-msg';
    const head = document.createElement('div');
    head.className = 'chat-meta';
    const who = document.createElement('span');
    who.className = 'chat-name';
    who.textContent = msg.self ? `${msg.name} (you)` : msg.name;
    const when = document.createElement('time');
    const date = new Date(msg.at);
    when.dateTime = date.toISOString();
    when.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    head.append(who, ' ', when);
    const body = document.createElement('div');
    body.className = 'chat-text';
    body.textContent = msg.text;
    item.append(head, body);
    const atBottom = this.chatLog.scrollHeight - this.chatLog.scrollTop - this.chatLog.clientHeight < 40;
    this.chatLog.append(item);
    if (atBottom || msg.self) this.chatLog.scrollTop = this.chatLog.scrollHeight;
    if (this.chat.hidden && !msg.self) {
      this.unread += 1;
      this.renderBadge();
    }
  }

  /**
   * The call is over for us: left, or the room could not be joined. `kind` names why
   * (`data-kind` on #ended: "left", "roomFull", "invalidRoomId"); a refusal is announced
   * as an alert.
   * @param {{ kind: string, title: string, text: string, canRejoin: boolean, rejoinLabel: string }} what
   */
  showEnded(what) {
    this.ended.dataset.kind = what.kind;
    this.ended.setAttribute('role', what.kind === 'left' ? 'status' : 'alert');
    byId('ended-title', HTMLHeadingElement).textContent = what.title;
    byId('ended-text', HTMLParagraphElement).textContent = what.text;
    const rejoin = byId('ended-rejoin', HTMLButtonElement);
    rejoin.hidden = !what.canRejoin;
    rejoin.textContent = what.rejoinLabel;
    this.ended.hidden = false;
    this.alone.hidden = true;
    this.root.classList.add('is-ended');
    this.show();
  }

  // ------------------------------------------------------------------ internals

  submitChat() {
    const text = this.chatInput.value;
    if (this.actions.sendChat(text)) {
      this.chatInput.value = '';
      this.fitChatInput();
    }
  }

  fitChatInput() {
    const el = this.chatInput;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 120)}px`;
  }

  renderBadge() {
    this.chatBadge.hidden = this.unread === 0;
    this.chatBadge.textContent = this.unread > 99 ? '99+' : String(this.unread);
    this.btnChat.setAttribute('aria-label', this.unread ? `Chat, ${this.unread} unread` : 'Chat');
  }

  /** @param {HTMLElement} pop @param {HTMLButtonElement} btn @param {boolean} [open] */
  togglePopover(pop, btn, open) {
    const show = open ?? pop.hidden;
    pop.hidden = !show;
    btn.setAttribute('aria-expanded', String(show));
  }

  /** @param {KeyboardEvent} ev */
  shortcut(ev) {
    this.actions.gesture();
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const t = ev.target;
    const typing =
      t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement ||
      (t instanceof HTMLElement && t.isContentEditable);
    if (ev.key === 'Escape') {
      this.togglePopover(this.help, this.btnHelp, false);
      this.togglePopover(this.devices, this.btnDevices, false);
      if (!this.chat.hidden) this.toggleChat(false);
      return;
    }
    if (typing || !this.ended.hidden) return;
    const key = ev.key.toLowerCase();
    if (key === 'm') this.actions.toggleMic();
    else if (key === 'v') this.actions.toggleCam();
    else if (key === 's') this.actions.toggleScreen();
    else if (key === 'c') this.toggleChat();
    else if (key === '?') this.togglePopover(this.help, this.btnHelp);
    else return;
    ev.preventDefault();
  }
}
