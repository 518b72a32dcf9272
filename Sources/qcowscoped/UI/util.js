// DOM building and formatting helpers.
//
// Every piece of text goes into the page as a Text node (createTextNode): names, messages and
// strings read from images can never become markup. Attribute values are set with setAttribute.

/**
 * Creates an element: h("a", {href: "#/", class: "x"}, "text", childNode, [more, children]).
 * Attributes whose value is null, undefined or false are left out; true sets an empty attribute.
 * Functions under "on<event>" keys become event listeners.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) {
      // Listeners only: an inline handler attribute is never written (the CSP would block it anyway).
      if (typeof v === "function") el.addEventListener(k.slice(2), v);
      continue;
    }
    // Links are routes ("#/...") or paths ("/v1/..."): never a URL with a scheme (javascript:, data:).
    if ((k === "href" || k === "src") && !/^[#/]/.test(String(v))) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/** Appends children: strings and numbers as text nodes, nodes as they are, arrays flattened. */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Replaces the children of `el`, keeping keyboard focus on the equivalent element (same
 * data-key, id or href) when it was inside `el`.
 */
export function replace(el, ...children) {
  const active = document.activeElement;
  let key = null;
  if (active && active !== el && el.contains(active)) {
    key = active.getAttribute("data-key") || (active.id && `#${active.id}`) || active.getAttribute("href");
  }
  el.replaceChildren();
  append(el, children);
  if (key) {
    for (const c of el.querySelectorAll("[data-key], [id], [href]")) {
      if (c.getAttribute("data-key") === key || (c.id && `#${c.id}` === key) || c.getAttribute("href") === key) {
        c.focus({ preventScroll: true });
        break;
      }
    }
  }
}

/** A table inside a horizontally scrolling wrapper: rows are arrays of cells (text or nodes). */
export function table(caption, headers, rows, opts = {}) {
  const t = h(
    "table",
    { class: opts.class || null },
    caption ? h("caption", { class: opts.captionHidden ? "visually-hidden" : null }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col" }, x))))),
    h(
      "tbody",
      {},
      rows.map((r) =>
        h(
          "tr",
          { class: r.rowClass || null },
          r.map((c, i) => (i === 0 && opts.rowHeaders ? h("th", { scope: "row" }, c) : h("td", {}, c))),
        ),
      ),
    ),
  );
  return h("div", { class: "scroll" }, t);
}

/** A description list from [term, value] pairs (values: text or nodes). */
export function dl(pairs) {
  return h(
    "dl",
    { class: "fields" },
    pairs.filter((p) => p).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
  );
}

const UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/** Human size in IEC units: 4 MiB, 1.5 GiB, 512 bytes. Accepts Number or BigInt. */
export function size(v) {
  if (v === null || v === undefined) return "—";
  let n = Number(v);
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u++;
  }
  if (u === 0) return `${n} ${n === 1 ? "byte" : "bytes"}`;
  const digits = n >= 100 || Number.isInteger(n) ? 0 : n >= 10 ? 1 : 2;
  return `${Number(n.toFixed(digits))} ${UNITS[u]}`;
}

/** An exact integer with thousands separators (Number or BigInt). */
export function int(v) {
  if (v === null || v === undefined) return "—";
  return v.toLocaleString("en-US");
}

/** A size as a node: human units, the exact byte count in its title and as hidden text. */
export function sizeNode(v) {
  if (v === null || v === undefined) return "—";
  return h("span", { title: `${int(v)} bytes` }, size(v));
}

/** 0x-prefixed lowercase hex of a Number or BigInt. */
export function hex(v) {
  if (v === null || v === undefined) return "—";
  return `0x${v.toString(16)}`;
}

/** A file offset: hex, then decimal. */
export function offset(v) {
  if (v === null || v === undefined) return "—";
  return `${hex(v)} (${int(v)})`;
}

/** A fraction 0..1 as a percentage, never showing a non-zero fraction as 0%. */
export function percent(f) {
  if (f === null || f === undefined) return "—";
  const p = Number(f) * 100;
  if (p === 0) return "0%";
  if (p < 0.01) return "<0.01%";
  if (p > 99.99 && p < 100) return ">99.99%";
  return `${Number(p.toFixed(p < 10 ? 2 : 1))}%`;
}

/**
 * An RFC 3339 timestamp as a <time> that never wraps: "2026-12-02 12:57:22 UTC", the full value
 * (nanoseconds included) in its title and datetime attribute.
 */
export function timeNode(iso) {
  if (typeof iso !== "string") return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?Z$/.exec(iso);
  const text = m ? `${m[1]} ${m[2]} UTC` : iso;
  return h("time", { datetime: iso, title: iso, class: "nowrap" }, text);
}

/** How long ago an RFC 3339 time was, in words ("3 min ago"), from `now` (milliseconds). */
export function agoText(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "—";
  const s = Math.round((now - t) / 1000);
  if (s < 0) return "in the future";
  if (s < 60) return s < 5 ? "just now" : `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} days ago`;
}

/** A <time> reading "3 min ago", the full time on hover and in its datetime attribute. */
export function agoNode(iso) {
  if (typeof iso !== "string") return "—";
  return h("time", { datetime: iso, title: iso, class: "nowrap ago" }, agoText(iso));
}

export function yesNo(b) {
  return b ? "yes" : "no";
}

/** A small labelled badge (text only); kind selects its colour: ok, warn, bad, info. */
export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind || "info"}` }, text);
}

// Names in URLs. Image names are UTF-8 file names: encodeURIComponent. Bitmap names are bytes:
// built from name_hex, every byte outside A-Z a-z 0-9 - . _ ~ as %XX, so '/', '%', spaces and
// non-UTF-8 bytes all reach the daemon exactly (it percent-decodes once).

export function imageSegment(name) {
  return encodeURIComponent(name);
}

export function hexToBytes(hexText) {
  const out = [];
  for (let i = 0; i + 1 < hexText.length; i += 2) out.push(parseInt(hexText.slice(i, i + 2), 16));
  return out;
}

function isUnreserved(b) {
  return (
    (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e
  );
}

export function encodeBytes(bytes) {
  let s = "";
  for (const b of bytes) s += isUnreserved(b) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  return s;
}

export function bitmapSegment(nameHex) {
  return encodeBytes(hexToBytes(nameHex));
}

/** Percent-decodes a URL segment into bytes (other characters as their UTF-8 bytes). */
export function decodeSegment(seg) {
  const out = [];
  const enc = new TextEncoder();
  for (let i = 0; i < seg.length; ) {
    if (seg[i] === "%" && /^[0-9a-fA-F]{2}$/.test(seg.slice(i + 1, i + 3))) {
      out.push(parseInt(seg.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const cp = seg.codePointAt(i);
      const ch = String.fromCodePoint(cp);
      out.push(...enc.encode(ch));
      i += ch.length;
    }
  }
  return out;
}

/** Bytes as the API's lossless text: UTF-8 as itself, other bytes as \xNN, "\" as "\\". */
export function bytesToText(bytes) {
  let s = "";
  const dec = new TextDecoder("utf-8", { fatal: true });
  try {
    s = dec.decode(new Uint8Array(bytes));
    return s.replaceAll("\\", "\\\\");
  } catch {
    return bytes.map((b) => (b >= 0x20 && b < 0x7f ? (b === 0x5c ? "\\\\" : String.fromCharCode(b)) : `\\x${b.toString(16).padStart(2, "0")}`)).join("");
  }
}

/** The API's problem document as one readable line. */
export function problemText(err) {
  if (err && err.problem) {
    const p = err.problem;
    return [p.title, p.detail].filter(Boolean).join(": ") || `HTTP ${err.status}`;
  }
  return err && err.message ? err.message : String(err);
}
