// The image list (#/ and #/?limit=N&cursor=NAME): GET /v1/images, one page at a time, following
// the `next` cursor; sortable by column and filterable by text within the page.

import { agoNode, badge, h, imageSegment, int, replace, size } from "./util.js";

const COLUMNS = [
  { key: "name", label: "Name", value: (i) => i.name },
  { key: "virtual_size", label: "Virtual size", value: (i) => i.virtual_size, numeric: true },
  { key: "bitmaps", label: "Bitmaps", value: (i) => i.bitmaps, numeric: true },
  { key: "in_use", label: "In use", value: (i) => i.bitmaps_in_use ?? null, numeric: true },
  { key: "writer", label: "Writer", value: (i) => (i.writer_present === null || i.writer_present === undefined ? null : i.writer_present ? 1 : 0) },
  { key: "status", label: "Status", value: (i) => i.status },
  { key: "check", label: "Check", value: (i) => (i.check ? i.check.state : null) },
  { key: "findings", label: "Findings", value: (i) => findingTotal(i), numeric: true },
  { key: "mtime", label: "Modified", value: (i) => i.mtime },
];

/** The words the filter matches besides the name: status, check state, writer, bitmaps left in use. */
function filterWords(i) {
  const w = [i.status];
  if (i.check) w.push(`check ${i.check.state}`, i.check.state);
  if (i.writer_present === true) w.push("writer", "in use by a writer");
  if (i.writer_present === false) w.push("no writer");
  if (Number(i.bitmaps_in_use) > 0) w.push("in use", i.writer_present === false ? "stale" : "");
  return w.join(" ");
}

function writerCell(i) {
  if (i.writer_present === true) return badge("writer", "warn");
  if (i.writer_present === false) return h("span", { class: "breakdown" }, "none");
  return "—";
}

function inUseCell(i) {
  if (i.bitmaps_in_use === null || i.bitmaps_in_use === undefined) return "—";
  const n = Number(i.bitmaps_in_use);
  if (!n) return "0";
  // In use with no writer: left by a crash (the next incremental backup from them fails).
  return i.writer_present === false ? badge(`${n} stale`, "bad") : int(n);
}

function checkCell(i) {
  const c = i.check;
  if (!c) return "—";
  const kind = { clean: "ok", leaks: "warn", busy: "warn", corrupt: "bad", error: "bad" }[c.state] || "info";
  return [badge(c.state, kind), c.checked_at ? [" ", h("span", { class: "breakdown" }, agoNode(c.checked_at))] : null];
}

const PAGE_SIZES = [10, 100, 1000];

// Kept across pages, live updates and visits of other pages.
const state = { sort: "name", dir: 1, filter: "", pages: [""], lastNext: null };

function findingTotal(i) {
  const c = i.finding_counts;
  return c ? Number(c.error) + Number(c.warning) + Number(c.info) : null;
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // unknown values last, whatever the direction
  if (b === null || b === undefined) return -1;
  if (typeof a === "string") return a < b ? -1 : a > b ? 1 : 0;
  return a < b ? -1 : a > b ? 1 : 0; // Number and BigInt compare with each other
}

function findingsCell(i) {
  const c = i.finding_counts;
  if (!c) return i.error ? h("span", { class: "breakdown" }, i.error.message || "unreadable") : "—";
  const total = findingTotal(i);
  if (total === 0) return "0";
  const parts = [];
  for (const s of ["error", "warning", "info"]) {
    const n = Number(c[s]);
    if (n) parts.push(`${n} ${s}${n === 1 ? "" : s === "info" ? "" : "s"}`);
  }
  return [String(total), " ", h("span", { class: "breakdown" }, `(${parts.join(", ")})`)];
}

function statusBadge(i) {
  const kind = i.status === "ok" ? "ok" : i.status === "findings" ? "warn" : "bad";
  return badge(i.status, kind);
}

function listPath(params) {
  const q = new URLSearchParams();
  q.set("limit", String(params.limit));
  if (params.cursor) q.set("cursor", params.cursor);
  return `/v1/images?${q}`;
}

function routeFor(limit, cursor) {
  const q = new URLSearchParams();
  if (limit !== 100) q.set("limit", String(limit));
  if (cursor) q.set("cursor", cursor);
  const s = q.toString();
  return s ? `#/?${s}` : "#/";
}

export async function listView(main, query, live, app) {
  const limitParam = Number.parseInt(query.get("limit") || "100", 10);
  const limit = Number.isInteger(limitParam) && limitParam >= 1 && limitParam <= 1000 ? limitParam : 100;
  const cursor = query.get("cursor") || "";
  app.setTitle("Images");
  app.setCrumbs([]);

  // The cursors of the pages visited in a row from the first one ("" is the first page): the
  // previous page is known only when we came from it.
  const pages = state.pages;
  if (!cursor) pages.splice(0, pages.length, "");
  else if (pages.includes(cursor)) pages.length = pages.indexOf(cursor) + 1;
  else if (state.lastNext === cursor && pages.length) pages.push(cursor);
  else pages.splice(0, pages.length, cursor);
  const previous = pages.length >= 2 ? pages[pages.length - 2] : null;

  let items = [];
  let next = null;
  const filterInput = h("input", {
    id: "image-filter", type: "search", placeholder: "name, status, check, writer, stale", autocomplete: "off", "aria-controls": "image-table",
  });
  filterInput.value = state.filter;
  const count = h("p", { class: "count", id: "image-count" });
  const tableBox = h("div", { class: "scroll" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of images" });
  const sizeSelect = h(
    "select",
    { id: "page-size" },
    PAGE_SIZES.concat(PAGE_SIZES.includes(limit) ? [] : [limit]).map((n) => h("option", { value: n, selected: n === limit }, String(n))),
  );
  sizeSelect.addEventListener("change", () => {
    location.hash = routeFor(Number(sizeSelect.value), "");
  });

  function render() {
    const needle = state.filter.trim().toLowerCase();
    const shown = items.filter(
      (i) => !needle || i.name.toLowerCase().includes(needle) || filterWords(i).includes(needle) || (i.error && String(i.error.message || "").toLowerCase().includes(needle)),
    );
    const col = COLUMNS.find((c) => c.key === state.sort) || COLUMNS[0];
    shown.sort((a, b) => {
      const r = compare(col.value(a), col.value(b));
      const unknown = col.value(a) === null || col.value(b) === null;
      return (unknown ? r : r * state.dir) || compare(a.name, b.name);
    });
    const head = h(
      "tr",
      {},
      COLUMNS.map((c) => {
        const active = c.key === state.sort;
        const dir = active ? (state.dir > 0 ? "ascending" : "descending") : "none";
        const button = h(
          "button",
          { type: "button", class: "sort", "data-key": `sort-${c.key}`, "data-sort": c.key },
          c.label,
          h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (state.dir > 0 ? " ▲" : " ▼") : ""),
        );
        button.addEventListener("click", () => {
          if (state.sort === c.key) state.dir = -state.dir;
          else {
            state.sort = c.key;
            state.dir = 1;
          }
          render();
        });
        return h("th", { scope: "col", "aria-sort": dir, class: `col-${c.key}${c.numeric ? " num" : ""}` }, button);
      }),
    );
    const rows = shown.map((i) =>
      h(
        "tr",
        { "data-name": i.name },
        h("th", { scope: "row" }, h("a", { href: `#/images/${imageSegment(i.name)}`, class: "image-link" }, i.name)),
        h("td", { class: "num col-virtual_size", title: i.virtual_size === null ? null : `${int(i.virtual_size)} bytes` }, i.virtual_size === null ? "—" : size(i.virtual_size)),
        h("td", { class: "num col-bitmaps" }, i.bitmaps === null ? "—" : int(i.bitmaps)),
        h("td", { class: "num in-use col-in_use" }, inUseCell(i)),
        h("td", { class: "writer col-writer" }, writerCell(i)),
        h("td", { class: "status col-status" }, statusBadge(i)),
        h("td", { class: "check col-check" }, checkCell(i)),
        h("td", { class: "num findings col-findings" }, findingsCell(i)),
        h("td", { class: "mtime col-mtime" }, agoNode(i.mtime)),
      ),
    );
    replace(
      tableBox,
      h(
        "table",
        { id: "image-table" },
        h("caption", { class: "visually-hidden" }, "Images (column headers sort)"),
        h("thead", {}, head),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: COLUMNS.length }, items.length ? "No image matches the filter." : "No images."))),
      ),
    );
    count.textContent = needle
      ? `${shown.length} of ${items.length} images on this page match “${state.filter.trim()}”.`
      : `${items.length} image${items.length === 1 ? "" : "s"} on this page.`;
    const links = [];
    if (cursor) links.push(h("a", { href: routeFor(limit, ""), "data-key": "first" }, "First page"));
    if (previous !== null && previous !== "") links.push(h("a", { href: routeFor(limit, previous), "data-key": "prev" }, "Previous page"));
    if (next) links.push(h("a", { href: routeFor(limit, next), rel: "next", id: "next-page", "data-key": "next" }, "Next page"));
    replace(pager, links);
  }

  filterInput.addEventListener("input", () => {
    state.filter = filterInput.value;
    render();
  });

  await live.watch(listPath({ limit, cursor }), (doc) => {
    items = doc.images;
    next = doc.next;
    if (pages[pages.length - 1] === cursor) state.lastNext = next;
    render();
  });

  if (live.closed) return;
  main.replaceChildren(
    h("h1", {}, "Images"),
    h(
      "div",
      { class: "toolbar" },
      h("div", { class: "control" }, h("label", { for: "image-filter" }, "Filter"), filterInput),
      h("div", { class: "control" }, h("label", { for: "page-size" }, "Per page"), sizeSelect),
    ),
    count,
    tableBox,
    pager,
  );
}
