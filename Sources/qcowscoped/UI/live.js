// Live documents: each view registers the API paths it shows; the app polls them every few
// seconds with If-None-Match. A 304 changes nothing; a 200 whose body differs calls the view's
// apply() so it updates that part of the page in place.

import { getJSON } from "./api.js";

export class Live {
  constructor() {
    this.watches = [];
    this.closed = false;
  }

  /**
   * Fetches `path` now (rejecting when that fails) and on every poll; apply(data, first) runs
   * for the first answer and for every later 200 with a different body. onError(err) handles a
   * failed poll of this path (default: the app's banner).
   */
  async watch(path, apply, onError = null) {
    const w = { path, etag: null, text: null, apply, onError };
    this.watches.push(w);
    await this.refresh(w, true);
    return w;
  }

  /** Points a watch at another path (another page of a paged list) and loads it. */
  async retarget(w, path) {
    w.path = path;
    w.etag = null;
    w.text = null;
    await this.refresh(w, true);
  }

  unwatch(w) {
    this.watches = this.watches.filter((x) => x !== w);
  }

  /** Forgets the stored versions, so the next poll re-applies every document (a 200 each). */
  invalidate() {
    for (const w of this.watches) w.etag = null;
  }

  async refresh(w, first) {
    const path = w.path;
    const r = await getJSON(path, { etag: w.etag });
    if (this.closed || path !== w.path || !this.watches.includes(w)) return false;
    if (r.status === 304) return false;
    w.etag = r.etag;
    // The image list carries no ETag: compare the body instead.
    if (!first && r.text === w.text) return false;
    w.text = r.text;
    await w.apply(r.data, first);
    return true;
  }

  /** One polling round over every watched path, in order. Throws the first unhandled error. */
  async poll() {
    let failure = null;
    for (const w of [...this.watches]) {
      if (this.closed) return;
      if (!this.watches.includes(w)) continue;
      try {
        await this.refresh(w, false);
      } catch (err) {
        if (w.onError) w.onError(err);
        else failure = failure || err;
      }
    }
    if (failure) throw failure;
  }

  close() {
    this.closed = true;
  }
}
