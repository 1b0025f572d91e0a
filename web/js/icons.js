// Line icons for the controls, drawn on a 24x24 grid and stroked in currentColor.

/** @param {string} body */
const svg = (body) =>
  `<svg class="icon" viewBox="0 0 24 24" width="24" height="24" fill="none" stroke="currentColor" stroke-width="1.9" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">${body}</svg>`;

const MIC = '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21"/>';
const CAM = '<rect x="2.5" y="6" width="13" height="12" rx="2.5"/><path d="M15.5 10.5 21 7.5v9l-5.5-3z"/>';
const SLASH = '<path d="M3.5 3.5l17 17"/>';

export const icons = {
  mic: svg(MIC),
  micOff: svg(MIC + SLASH),
  cam: svg(CAM),
  camOff: svg(CAM + SLASH),
  screen: svg('<rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4M12 13V8M9.5 10.5 12 8l2.5 2.5"/>'),
  chat: svg('<path d="M5 5h14a1.5 1.5 0 0 1 1.5 1.5v8A1.5 1.5 0 0 1 19 16H10l-5 4v-4a1.5 1.5 0 0 1-1.5-1.5v-8A1.5 1.5 0 0 1 5 5z"/>'),
  leave: svg('<path d="M10 17l5-5-5-5M15 12H3M14 4h4.5A1.5 1.5 0 0 1 20 5.5v13a1.5 1.5 0 0 1-1.5 1.5H14"/>'),
  link: svg('<path d="M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"/>'),
  check: svg('<path d="M5 12.5l4.5 4.5L19 7.5"/>'),
  settings: svg('<path d="M4 7h9M19 7h1M4 17h3M13 17h7"/><circle cx="16" cy="7" r="2.5"/><circle cx="10" cy="17" r="2.5"/>'),
  help: svg('<circle cx="12" cy="12" r="9"/><path d="M9.6 9.4a2.5 2.5 0 0 1 4.8.9c0 1.6-2.4 2.1-2.4 3.7"/><path d="M12 17.2v.1"/>'),
  close: svg('<path d="M6.5 6.5l11 11M17.5 6.5l-11 11"/>'),
  shuffle: svg('<path d="M19.5 12a7.5 7.5 0 1 1-2.2-5.3M19.5 4.5v4.5H15"/>'),
  send: svg('<path d="M4.5 12 20 4.5 15.5 20l-3-6.5z"/><path d="M12.5 13.5 20 4.5"/>'),
  people: svg('<circle cx="9" cy="8.5" r="3.2"/><path d="M3.5 19a5.5 5.5 0 0 1 11 0"/><path d="M15.5 5.6a3.2 3.2 0 0 1 0 5.8M17.5 14.2A5.5 5.5 0 0 1 20.5 19"/>'),
  alert: svg('<path d="M12 4 2.8 19.5h18.4z"/><path d="M12 10v4M12 17v.1"/>'),
  info: svg('<circle cx="12" cy="12" r="9"/><path d="M12 11v5.5M12 7.6v.1"/>'),
  relay: svg('<path d="M4 12h4l2-5 4 10 2-5h4"/>'),
};

/** The favicon and brand mark: two linked nodes in a rounded square. */
export const logo =
  '<svg class="logo" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true"><rect width="32" height="32" rx="9" fill="#5b8cff"/><circle cx="10" cy="11" r="3.6" fill="#fff"/><circle cx="22" cy="11" r="3.6" fill="#fff"/><circle cx="16" cy="22" r="3.6" fill="#fff"/><path d="M10 11 22 11 16 22z" fill="none" stroke="#fff" stroke-width="1.8" stroke-linejoin="round" opacity=".75"/></svg>';
