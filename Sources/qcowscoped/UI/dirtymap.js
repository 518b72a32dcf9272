// The dirty map: a bitmap drawn on a <canvas> as a grid of guest-address cells (address order,
// left to right, top to bottom), each coloured by the fraction of its bytes that are dirty,
// computed from the extents endpoint ({start, length, dirty} runs).
//
// Hover a cell, or focus the canvas and move with the arrow keys: a tooltip and a text line
// (aria-live) give the guest range and its dirty bytes. Arithmetic is BigInt throughout, so
// 64-bit guest addresses stay exact.

import { h, hex, int, percent, size } from "./util.js";

export const MAX_CELLS = 1024;

/**
 * Splits guest bytes [0, length) into at most MAX_CELLS cells of whole granules and sums the
 * dirty bytes of `extents` in each; `covered` is where the loaded extents end (cells past it
 * are unknown).
 */
export function computeCells(length, granularity, extents, covered, from = 0n) {
  const L = BigInt(length);
  if (L === 0n) return { cells: [], cellBytes: 0n, from: BigInt(from) };
  const F = BigInt(from);
  const g = granularity ? BigInt(granularity) : 1n;
  const granules = (L + g - 1n) / g;
  const max = BigInt(MAX_CELLS);
  const perCell = (granules + max - 1n) / max;
  const cellBytes = perCell * g;
  const n = Number((L + cellBytes - 1n) / cellBytes);
  const cov = BigInt(covered);
  const cells = new Array(n);
  for (let i = 0; i < n; i++) {
    const start = F + BigInt(i) * cellBytes;
    const end = start + cellBytes < F + L ? start + cellBytes : F + L;
    cells[i] = { start, end, dirty: 0n, known: end <= cov ? end - start : cov > start ? cov - start : 0n };
  }
  for (const e of extents) {
    if (!e.dirty) continue;
    const s = BigInt(e.start);
    const t = s + BigInt(e.length);
    let i = s > F ? Number((s - F) / cellBytes) : 0;
    for (; i < n && cells[i].start < t; i++) {
      const c = cells[i];
      const a = s > c.start ? s : c.start;
      const b = t < c.end ? t : c.end;
      if (b > a) c.dirty += b - a;
    }
  }
  return { cells, cellBytes, from: F };
}

function parseColor(text, fallback) {
  const m = /#([0-9a-f]{6})/i.exec(text || "");
  const v = m ? m[1] : fallback;
  return [0, 2, 4].map((i) => parseInt(v.slice(i, i + 2), 16));
}

function mix(a, b, t) {
  return `rgb(${a.map((x, i) => Math.round(x + (b[i] - x) * t)).join(",")})`;
}

/** Number of columns: roughly a 2:1 grid, 8 to 32 columns (fewer when there are fewer cells). */
function columnsFor(n) {
  if (n <= 8) return Math.max(n, 1);
  const c = 2 ** Math.round(Math.log2(Math.sqrt(n * 4)));
  return Math.min(32, Math.max(8, c), n);
}

export function cellText(c, index, count) {
  const len = c.end - c.start;
  const range = `Cell ${index + 1} of ${count}: guest bytes ${hex(c.start)}–${hex(c.end - 1n)} (${size(c.start)} to ${size(c.end)})`;
  if (c.known === 0n) return [range, "not loaded: beyond the extents read for this map"];
  const frac = Number(c.dirty) / Number(len);
  const partial = c.known < len ? ` (only ${size(c.known)} of it loaded)` : "";
  return [range, `${int(c.dirty)} of ${int(len)} bytes dirty (${percent(frac)})${partial}`];
}

/**
 * Creates the map; call update(data) with {length, granularity, extents, covered, trusted, from, diskLength}.
 *
 * `onZoom(start, length)` is called to show another guest range: + (or Enter) and the wheel zoom into the
 * selected or hovered cell, - zooms out eight times, 0 shows the whole disk, and a drag selects the
 * cells from where it started to where it ended.
 */
export function createDirtyMap(id, onZoom = null) {
  const canvas = h("canvas", {
    id: `${id}-canvas`, class: "map-canvas", tabindex: "0", role: "img",
    "aria-label": "Dirty map", "aria-describedby": `${id}-help ${id}-readout`,
  });
  const tip = h("div", { class: "map-tip", id: `${id}-tip`, role: "tooltip", hidden: true });
  const wrap = h("div", { class: "map-wrap" }, canvas, tip);
  const help = h("p", { class: "hint", id: `${id}-help` });
  const readout = h("p", { class: "readout", id: `${id}-readout`, "aria-live": "polite" }, "Hover a cell, or focus the map and use the arrow keys, to read its guest range and dirty bytes.");
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    h("li", {}, h("span", { class: "swatch swatch-clean", "aria-hidden": "true" }), "clean"),
    h("li", {}, h("span", { class: "swatch swatch-low", "aria-hidden": "true" }), "partly dirty"),
    h("li", {}, h("span", { class: "swatch swatch-dirty", "aria-hidden": "true" }), "all dirty"),
    h("li", {}, h("span", { class: "swatch swatch-unknown", "aria-hidden": "true" }), "not loaded"),
  );
  const axis = h("div", { class: "map-axis", id: `${id}-axis` });
  const element = h("div", { class: "dirtymap" }, wrap, axis, legend, help, readout);

  let model = { cells: [], cellBytes: 0n, trusted: true, from: 0n, length: 0n, disk: 0n };
  let dragFrom = -1;

  /** Asks for [start, start + length) clipped to the disk, in whole cells of at least one granule. */
  function zoomTo(start, length) {
    if (!onZoom || model.disk === 0n) return;
    let s = start < 0n ? 0n : start;
    let l = length < 1n ? 1n : length;
    if (s >= model.disk) s = model.disk - 1n;
    if (s + l > model.disk) l = model.disk - s;
    if (s === model.from && l === model.length) return;
    onZoom(s, l);
  }

  function zoomInto(i) {
    if (i < 0 || i >= model.cells.length) return;
    const c = model.cells[i];
    zoomTo(c.start, c.end - c.start);
  }

  function zoomOut() {
    const wider = model.length * 8n;
    const centre = model.from + model.length / 2n;
    const s = centre > wider / 2n ? centre - wider / 2n : 0n;
    zoomTo(wider >= model.disk ? 0n : s, wider >= model.disk ? model.disk : wider);
  }
  let geometry = { cols: 1, rows: 0, px: 0 };
  let selected = -1;
  let hover = -1;

  function colors() {
    const cs = getComputedStyle(canvas);
    return {
      clean: parseColor(cs.getPropertyValue("--map-clean"), "e6e9ee"),
      low: parseColor(cs.getPropertyValue("--map-low"), "f6c177"),
      dirty: parseColor(cs.getPropertyValue("--map-dirty"), "c2410c"),
      unknown: parseColor(cs.getPropertyValue("--map-unknown"), "9aa3ad"),
      grid: parseColor(cs.getPropertyValue("--map-grid"), "ffffff"),
      mark: parseColor(cs.getPropertyValue("--map-mark"), "111111"),
    };
  }

  function fillOf(c, col) {
    if (c.known === 0n) return mix(col.unknown, col.unknown, 0);
    if (c.dirty === 0n) return mix(col.clean, col.clean, 0);
    const f = Number(c.dirty) / Number(c.end - c.start);
    return mix(col.low, col.dirty, Math.min(1, Math.max(0, f)));
  }

  function draw() {
    const n = model.cells.length;
    const width = Math.max(120, Math.min(wrap.clientWidth || 480, 720));
    const cols = columnsFor(n);
    const rows = Math.ceil(n / cols);
    const px = Math.max(4, Math.floor(width / cols));
    geometry = { cols, rows, px };
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, cols * px * dpr);
    canvas.height = Math.max(1, rows * px * dpr);
    canvas.style.width = `${cols * px}px`; // CSSOM, not a style attribute: allowed by the CSP
    canvas.style.height = `${rows * px}px`;
    canvas.dataset.cols = String(cols);
    canvas.dataset.rows = String(rows);
    canvas.dataset.cellPx = String(px);
    canvas.dataset.cells = String(n);
    canvas.dataset.cellBytes = String(model.cellBytes);
    canvas.dataset.dirtyCells = String(model.cells.filter((c) => c.dirty > 0n).length);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const col = colors();
    ctx.fillStyle = mix(col.grid, col.grid, 0);
    ctx.fillRect(0, 0, cols * px, rows * px);
    const gap = px >= 6 ? 1 : 0;
    model.cells.forEach((c, i) => {
      const x = (i % cols) * px;
      const y = Math.floor(i / cols) * px;
      ctx.fillStyle = fillOf(c, col);
      ctx.fillRect(x + gap, y + gap, px - gap, px - gap);
      if (c.known === 0n && px >= 6) {
        ctx.strokeStyle = mix(col.grid, col.grid, 0);
        ctx.beginPath();
        ctx.moveTo(x + gap, y + px);
        ctx.lineTo(x + px, y + gap);
        ctx.stroke();
      }
    });
    const mark = hover >= 0 ? hover : selected;
    if (mark >= 0 && mark < n) {
      ctx.strokeStyle = mix(col.mark, col.mark, 0);
      ctx.lineWidth = 2;
      ctx.strokeRect((mark % cols) * px + 1, Math.floor(mark / cols) * px + 1, px - 1, px - 1);
      ctx.lineWidth = 1;
    }
  }

  function show(i, fromPointer) {
    const n = model.cells.length;
    if (i < 0 || i >= n) {
      tip.hidden = true;
      return;
    }
    const lines = cellText(model.cells[i], i, n);
    tip.replaceChildren(h("strong", {}, lines[0]), h("br", {}), lines[1]);
    tip.hidden = false;
    const { cols, px } = geometry;
    const x = (i % cols) * px;
    const y = Math.floor(i / cols) * px;
    const maxLeft = Math.max(0, wrap.clientWidth - tip.offsetWidth - 4);
    tip.style.left = `${Math.min(Math.max(0, x + px / 2 - tip.offsetWidth / 2), maxLeft)}px`;
    tip.style.top = `${y + px + 6}px`;
    readout.textContent = `${lines[0]}. ${lines[1]}.`;
    canvas.dataset.selected = String(i);
    if (!fromPointer) canvas.setAttribute("aria-label", `Dirty map, ${lines[0]}`);
  }

  function cellAt(ev) {
    const r = canvas.getBoundingClientRect();
    const { cols, px } = geometry;
    const cx = Math.floor((ev.clientX - r.left) / px);
    const cy = Math.floor((ev.clientY - r.top) / px);
    if (cx < 0 || cx >= cols || cy < 0) return -1;
    const i = cy * cols + cx;
    return i < model.cells.length ? i : -1;
  }

  canvas.addEventListener("mousemove", (ev) => {
    const i = cellAt(ev);
    if (i === hover) return;
    hover = i;
    draw();
    show(i >= 0 ? i : document.activeElement === canvas ? selected : -1, true);
  });
  canvas.addEventListener("mouseleave", () => {
    hover = -1;
    draw();
    show(document.activeElement === canvas ? selected : -1, true);
  });
  canvas.addEventListener("focus", () => {
    if (selected < 0 && model.cells.length) selected = 0;
    draw();
    show(selected, false);
  });
  canvas.addEventListener("blur", () => {
    tip.hidden = true;
  });
  canvas.addEventListener("mousedown", (ev) => {
    dragFrom = cellAt(ev);
  });
  canvas.addEventListener("mouseup", (ev) => {
    const to = cellAt(ev);
    const from = dragFrom;
    dragFrom = -1;
    if (from < 0 || to < 0 || from === to) return;
    const a = Math.min(from, to), b = Math.max(from, to);
    zoomTo(model.cells[a].start, model.cells[b].end - model.cells[a].start);
  });
  canvas.addEventListener("wheel", (ev) => {
    if (!onZoom) return;
    ev.preventDefault();
    if (ev.deltaY < 0) zoomInto(cellAt(ev) >= 0 ? cellAt(ev) : selected);
    else if (ev.deltaY > 0) zoomOut();
  }, { passive: false });
  canvas.addEventListener("keydown", (ev) => {
    const n = model.cells.length;
    if (!n) return;
    if (ev.key === "+" || ev.key === "=" || ev.key === "Enter") {
      ev.preventDefault();
      zoomInto(selected < 0 ? 0 : selected);
      return;
    }
    if (ev.key === "-") {
      ev.preventDefault();
      zoomOut();
      return;
    }
    if (ev.key === "0") {
      ev.preventDefault();
      zoomTo(0n, model.disk);
      return;
    }
    const { cols } = geometry;
    const moves = {
      ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, PageDown: cols * 4, PageUp: -cols * 4,
    };
    let i = selected < 0 ? 0 : selected;
    if (ev.key in moves) i += moves[ev.key];
    else if (ev.key === "Home") i = 0;
    else if (ev.key === "End") i = n - 1;
    else if (ev.key === "Escape") {
      tip.hidden = true;
      return;
    } else return;
    ev.preventDefault();
    selected = Math.min(n - 1, Math.max(0, i));
    hover = -1;
    draw();
    show(selected, false);
  });

  let lastWidth = 0;
  new ResizeObserver(() => {
    if (wrap.clientWidth !== lastWidth) {
      lastWidth = wrap.clientWidth;
      if (model.cells.length) draw();
    }
  }).observe(wrap);

  function update(data) {
    const from = BigInt(data.from ?? 0n);
    const { cells, cellBytes } = computeCells(data.length, data.granularity, data.extents, data.covered, from);
    model = { cells, cellBytes, trusted: data.trusted, from, length: BigInt(data.length), disk: BigInt(data.diskLength ?? data.length) };
    // Guest offsets under the map: its first byte, its middle, its end.
    const end = from + BigInt(data.length);
    const mid = from + BigInt(data.length) / 2n;
    axis.replaceChildren(...[from, mid, end].map((v, k) => h("span", { class: `axis-${["start", "mid", "end"][k]}`, title: `${int(v)}` }, `${hex(v)} (${size(v)})`)));
    canvas.dataset.from = String(from);
    canvas.dataset.length = String(data.length);
    if (selected >= cells.length) selected = cells.length - 1;
    const dirtyCells = cells.filter((c) => c.dirty > 0n).length;
    help.replaceChildren(
      model.length === model.disk
        ? `${int(cells.length)} cells of ${size(cellBytes)} each (${int(cellBytes)} bytes) cover the ${size(data.length)} guest disk in address order, left to right, top to bottom; `
        : `${int(cells.length)} cells of ${size(cellBytes)} each (${int(cellBytes)} bytes) cover guest bytes ${hex(from)}–${hex(end - 1n)} (${size(data.length)} of the ${size(model.disk)} disk); `,
      `${int(dirtyCells)} ${dirtyCells === 1 ? "cell holds" : "cells hold"} dirty bytes.`,
      data.trusted ? "" : " This bitmap is not trustworthy: the map shows what the file holds, not what changed.",
    );
    canvas.setAttribute("aria-label", `Dirty map: ${int(cells.length)} cells, ${int(dirtyCells)} with dirty bytes`);
    element.classList.toggle("untrusted", !data.trusted);
    draw();
    if (document.activeElement === canvas && selected >= 0) show(selected, false);
    else if (hover >= 0) show(hover, true);
  }

  return { element, update };
}
