// The JSON API client: the same GET requests curl makes, plus If-None-Match for polling and an
// optional bearer token.
//
// On 401 (WWW-Authenticate: Bearer) the user is asked once for a token with a form (a <dialog>);
// requests failing meanwhile wait for that one answer. The token is kept in sessionStorage (this
// tab only) and sent as "Authorization: Bearer <token>".

import { parseJSON } from "./json.js";

const TOKEN_KEY = "qcowscope.token";

/** A non-2xx answer (other than 304); `problem` is the RFC 9457 document when there is one. */
export class HTTPError extends Error {
  constructor(status, problem, path) {
    super(problem && (problem.detail || problem.title) ? `${problem.title || ""}${problem.detail ? `: ${problem.detail}` : ""}` : `HTTP ${status} for ${path}`);
    this.status = status;
    this.problem = problem;
    this.path = path;
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lives as long as the page.
  }
  memoryToken = t || null;
  tokenListeners.forEach((f) => f(Boolean(t)));
}

let memoryToken = null;
const tokenListeners = [];

/** Calls f(hasToken) whenever the token changes. */
export function onTokenChange(f) {
  tokenListeners.push(f);
}

let pending = null;

/** Shows the token form; resolves to the token, or null when cancelled. One form at a time. */
function askToken(message) {
  if (pending) return pending;
  const dialog = document.getElementById("auth-dialog");
  const form = document.getElementById("auth-form");
  const input = document.getElementById("auth-token");
  const cancel = document.getElementById("auth-cancel");
  document.getElementById("auth-message").textContent = message;
  pending = new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      input.value = "";
      pending = null;
      resolve(value);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (v) done(v);
    };
    const onCancel = (e) => {
      e.preventDefault();
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pending;
}

let declined = false;

/**
 * GET `path` (absolute, e.g. /v1/images). Resolves to {status: 200, etag, text, data} or
 * {status: 304, etag}; rejects with HTTPError for any other status.
 */
export async function getJSON(path, { etag } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Accept: "application/json" };
    if (etag) headers["If-None-Match"] = etag;
    const t = token() || memoryToken;
    if (t) headers.Authorization = `Bearer ${t}`;
    const r = await fetch(path, { headers, cache: "no-store", credentials: "omit", redirect: "error" });
    if (r.status === 304) return { status: 304, etag };
    const text = await r.text();
    if (r.ok) {
      declined = false;
      return { status: r.status, etag: r.headers.get("ETag"), text, data: parseJSON(text) };
    }
    let problem = null;
    try {
      problem = parseJSON(text);
    } catch {
      problem = null;
    }
    const bearer = /bearer/i.test(r.headers.get("WWW-Authenticate") || "");
    if (r.status === 401 && bearer && !declined && attempt < 3) {
      const current = token() || memoryToken;
      if (current && current !== t) continue; // another request got a newer token meanwhile
      const message = t
        ? "The daemon refused this token (HTTP 401). Enter another one."
        : "The daemon asks for a bearer token (HTTP 401).";
      if (t) setToken(null);
      const entered = await askToken(message);
      if (entered) {
        setToken(entered);
        continue;
      }
      declined = true;
    }
    throw new HTTPError(r.status, problem, path);
  }
}

/** Forgets the token and lets the next 401 ask again. */
export function forgetToken() {
  declined = false;
  setToken(null);
}

/** Asks again after the user declined once (e.g. a "Sign in" button). */
export function allowAsking() {
  declined = false;
}
