// qcowscope's web view: hash routing, settings, live polling.
//
//   #/                               the images (GET /v1/images, paged with ?limit=&cursor=)
//   #/images/NAME                    one image (NAME percent-encoded)
//   #/images/NAME/bitmaps/BITMAP     one bitmap (BITMAP: its name bytes, percent-encoded)
//
// Everything shown comes from the public JSON API (the same GETs curl makes); every string from
// an image is inserted as text, never as markup.

import { allowAsking, forgetToken, getJSON, HTTPError, onTokenChange, token } from "./api.js";
import { bitmapView } from "./bitmap.js";
import { imageView } from "./image.js";
import { listView } from "./list.js";
import { Live } from "./live.js";
import { decodeSegment, encodeBytes, h, problemText } from "./util.js";

const POLL_KEY = "qcowscope.pollSeconds";
const DEFAULT_POLL = 5;

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const announcer = document.getElementById("announce");
const banner = document.getElementById("banner");
const pollInput = document.getElementById("poll-seconds");
const pollState = document.getElementById("poll-state");
const forgetButton = document.getElementById("forget-token");

// ---- settings -------------------------------------------------------------------------------

function pollSeconds() {
  let v = null;
  try {
    v = localStorage.getItem(POLL_KEY);
  } catch {
    v = null;
  }
  const n = v === null ? DEFAULT_POLL : Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 3600 ? n : DEFAULT_POLL;
}

function savePollSeconds(n) {
  try {
    localStorage.setItem(POLL_KEY, String(n));
  } catch {
    // Storage disabled: the value holds for this page only.
  }
}

pollInput.value = String(pollSeconds());
pollInput.addEventListener("change", () => {
  const n = Number(pollInput.value);
  if (!Number.isInteger(n) || n < 0 || n > 3600) {
    pollInput.setAttribute("aria-invalid", "true");
    pollState.textContent = "Enter a whole number of seconds from 0 to 3600.";
    return;
  }
  pollInput.removeAttribute("aria-invalid");
  savePollSeconds(n);
  schedule();
});
document.getElementById("settings-form").addEventListener("submit", (e) => {
  e.preventDefault(); // no form submission (the CSP has form-action 'none'): apply in place
  pollInput.dispatchEvent(new Event("change"));
});

forgetButton.hidden = !token();
onTokenChange((has) => {
  forgetButton.hidden = !has;
});
forgetButton.addEventListener("click", () => {
  forgetToken();
  show();
});

// ---- page furniture ---------------------------------------------------------------------------

const app = {
  setTitle(t) {
    document.title = t ? `${t} — qcowscope` : "qcowscope";
  },
  setCrumbs(items) {
    const list = h("ol", {}, h("li", {}, h("a", { href: "#/" }, "Images")), items.map((i) => h("li", {}, i)));
    crumbs.replaceChildren(list);
  },
  announce(text) {
    announcer.textContent = "";
    setTimeout(() => {
      announcer.textContent = text;
    }, 50);
  },
  /** GET a document that is not polled on its own (extra pages). */
  async get(path) {
    return (await getJSON(path)).data;
  },
};

function showBanner(text) {
  banner.replaceChildren(text);
  banner.hidden = false;
}

function clearBanner() {
  if (!banner.hidden) {
    banner.hidden = true;
    banner.replaceChildren();
  }
}

// ---- routing ----------------------------------------------------------------------------------

function notFound(what) {
  return async (m) => {
    app.setTitle("Not found");
    app.setCrumbs([]);
    m.replaceChildren(h("h1", {}, "Not found"), h("p", {}, what), h("p", {}, h("a", { href: "#/" }, "All images")));
  };
}

function parseRoute(hash) {
  const raw = hash.startsWith("#/") ? hash.slice(1) : "/";
  const [path, q] = raw.split("?", 2);
  const parts = path.split("/").slice(1);
  if (parts.length === 1 && parts[0] === "") return { view: listView, params: new URLSearchParams(q || "") };
  if (parts[0] === "images" && parts.length >= 2 && parts[1]) {
    let image;
    try {
      image = decodeURIComponent(parts[1]);
    } catch {
      return { view: notFound("This address does not name an image."), params: null };
    }
    if (parts.length === 2) return { view: imageView, params: { image } };
    if (parts.length === 4 && parts[2] === "bitmaps" && parts[3]) {
      // Canonical percent-encoding of the name bytes, whatever the address held.
      // ?start=&length= is the dirty map's zoomed range (guest bytes), kept in the address so it can be shared.
      const query = new URLSearchParams(q || "");
      return { view: bitmapView, params: { image, bitmapSegment: encodeBytes(decodeSegment(parts[3])), start: query.get("start"), length: query.get("length") } };
    }
  }
  return { view: notFound("No page has this address."), params: null };
}

let current = null;
let navigations = 0;

function errorView(err) {
  const items = [h("h1", {}, err instanceof HTTPError && err.status === 404 ? "Not found" : "Cannot show this page"), h("p", { class: "error" }, problemText(err))];
  if (err instanceof HTTPError && err.problem && err.problem.type) items.push(h("p", { class: "hint" }, "Problem type: ", h("code", {}, err.problem.type)));
  if (err instanceof HTTPError && err.status === 401) {
    const retry = h("button", { type: "button", id: "sign-in" }, "Enter an access token");
    retry.addEventListener("click", () => {
      allowAsking();
      show();
    });
    items.push(h("p", {}, retry));
  }
  items.push(h("p", {}, h("a", { href: "#/" }, "All images")));
  return items;
}

async function show() {
  if (current) current.live.close();
  const live = new Live();
  current = { live };
  const focus = navigations++ > 0;
  const { view, params } = parseRoute(location.hash);
  main.setAttribute("aria-busy", "true");
  try {
    await view(main, params, live, app);
    if (!live.closed) clearBanner();
  } catch (err) {
    if (live.closed) return;
    // The page body now says what failed; polling the same documents would only repeat it in the
    // banner. The error view's Retry button loads the page again.
    live.watches.length = 0;
    current.failed = true;
    clearBanner();
    main.replaceChildren(...errorView(err));
  } finally {
    if (!live.closed) main.removeAttribute("aria-busy");
  }
  if (live.closed) return;
  if (focus) {
    const heading = main.querySelector("h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
  }
  schedule();
}

// ---- polling ----------------------------------------------------------------------------------

let timer = null;
let polling = false;

function describePolling() {
  const s = pollSeconds();
  if (current && current.failed) {
    pollState.textContent = "Live updates are paused: this page did not load.";
    return;
  }
  pollState.textContent = s === 0 ? "Live updates are off." : document.hidden ? `Paused while the tab is hidden (every ${s} s).` : `Checking for changes every ${s} s.`;
}

function schedule() {
  clearTimeout(timer);
  timer = null;
  describePolling();
  const s = pollSeconds();
  if (s > 0 && !document.hidden) timer = setTimeout(tick, s * 1000);
}

async function tick() {
  const live = current && current.live;
  if (!live || live.closed || document.hidden || polling) return schedule();
  polling = true;
  try {
    await live.poll();
    clearBanner();
  } catch (err) {
    if (!live.closed) showBanner(`Live update failed: ${problemText(err)}`);
  } finally {
    polling = false;
  }
  if (current && current.live === live) schedule();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    describePolling();
  } else tick();
});

// The skip link moves focus without touching the hash (the hash is the route).
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", () => {
  if (location.hash === "" || location.hash.startsWith("#/")) show();
});
show();
