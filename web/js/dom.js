// Small DOM helpers: typed element lookup, icons in buttons, device pickers.

/**
 * The element with this id, which must be of this type.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T, prototype: T }} type
 * @returns {T}
 */
export function byId(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`page is missing #${id} (${type.name})`);
  return el;
}

/**
 * Put an icon (trusted markup from icons.js) and an optional label into a button.
 * @param {HTMLElement} el
 * @param {string} icon
 * @param {string} [label]
 */
export function setIcon(el, icon, label) {
  el.innerHTML = icon;
  if (label) {
    const span = document.createElement('span');
    span.className = 'label';
    span.textContent = label;
    el.append(span);
  }
}

/**
 * Fill a device picker; the current device is selected, and an empty list says so.
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices
 * @param {string | null} current
 * @param {string} noun
 */
export function fillSelect(select, devices, current, noun) {
  select.replaceChildren();
  if (devices.length === 0) {
    const o = new Option(`No ${noun.toLowerCase()} found`, '');
    select.append(o);
    select.disabled = true;
    return;
  }
  select.disabled = false;
  devices.forEach((d, i) => {
    const o = new Option(d.label || `${noun} ${i + 1}`, d.deviceId);
    select.append(o);
  });
  if (current && devices.some((d) => d.deviceId === current)) select.value = current;
}
