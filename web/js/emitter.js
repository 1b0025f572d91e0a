// A small typed event emitter: `on(type, fn)` gets `fn(detail)` with the detail type of
// that event, checked by tsc. The other modules extend it to publish what happens to them.

/**
 * @template {Record<string, unknown>} Events  event name -> detail type
 */
export class Emitter {
  constructor() {
    /** @type {Map<keyof Events, Set<(detail: any) => void>>} */
    this.listeners = new Map();
  }

  /**
   * Listen to one event. Returns a function that stops listening.
   * @template {keyof Events} K
   * @param {K} type
   * @param {(detail: Events[K]) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {Events[K]} detail
   */
  emit(type, detail) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (err) {
        // One broken listener must not stop the others; the global handler records it.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}
