// Finding the page's elements with their types checked, once, at start-up.

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
