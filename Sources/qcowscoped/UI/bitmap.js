// One bitmap (#/images/NAME/bitmaps/BITMAP, BITMAP being the percent-encoded name bytes):
// directory fields, flags, trust, totals, findings, the dirty map and the bitmap table by pages.

import { createDirtyMap } from "./dirtymap.js";
import { findingsTable, trustBadges } from "./image.js";
import { HTTPError } from "./api.js";
import { badge, bitmapSegment, dl, h, hex, imageSegment, int, offset, percent, problemText, replace, size, sizeNode, table, yesNo } from "./util.js";

/** Extents pages walked for the map (10000 runs each). */
export const EXTENT_PAGES = 20;
const EXTENT_LIMIT = 10000;
const TABLE_LIMITS = [16, 64, 256, 1024];

function section(id, title, ...body) {
  return h("section", { id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), ...body);
}

function trustNotice(b) {
  if (b.consistent && !b.in_use) return null;
  const why = b.inconsistent_reason || "the in_use flag is set: QEMU had the bitmap open and did not store it cleanly (a crash, or a running VM)";
  return h(
    "div",
    { class: "notice notice-bad", role: "note", id: "untrusted-notice" },
    h("strong", {}, "Untrustworthy bitmap. "),
    `Its dirty data cannot be used for an incremental backup (${b.in_use ? "in_use flag set; " : ""}${why}).`,
  );
}

function directoryFields(b) {
  const rows = [
    ["index", int(b.index)],
    ["name", h("code", { class: "wrap" }, b.name)],
    ["name_hex", h("code", { class: "wrap" }, b.name_hex)],
    ["name_size", int(b.name_size)],
    ["bitmap_table_offset", h("code", {}, offset(b.bitmap_table_offset))],
    ["bitmap_table_size", int(b.bitmap_table_size)],
    ["flags", [h("code", {}, hex(b.flags_raw)), b.flags.length ? ` (${b.flags.join(", ")})` : " (no flag set)"]],
    ["enabled", b.enabled ? "yes (records writes)" : "no (frozen)"],
    ["type", int(b.type)],
    ["granularity_bits", int(b.granularity_bits)],
    ["granularity", b.granularity === null ? "—" : `${size(b.granularity)} (${int(b.granularity)} bytes)`],
    ["extra_data_size", int(b.extra_data_size)],
    ["extra_data_hex", b.extra_data_hex ? h("code", { class: "wrap" }, b.extra_data_hex) : "—"],
    ["entry_offset", h("code", {}, offset(b.entry_offset))],
    ["in_use", yesNo(b.in_use)],
    ["auto", yesNo(b.auto)],
    ["consistent", yesNo(b.consistent)],
    ["inconsistent_reason", b.inconsistent_reason === null ? "—" : b.inconsistent_reason],
    ["dirty_bytes_reason", b.dirty_bytes_reason === null ? "—" : b.dirty_bytes_reason],
  ];
  return table("Directory entry fields", ["Field", "Value"], rows.map(([k, v]) => [h("code", {}, k), v]), { captionHidden: true, class: "kv" });
}

function flagBadges(b) {
  const out = b.flags.filter((f) => f !== "auto").map((f) => badge(f, f === "in-use" ? "bad" : "info"));
  out.unshift(badge(b.enabled ? "enabled" : "disabled", "info"));
  return out;
}

function totals(b) {
  return dl([
    ["Dirty bytes", b.dirty_bytes === null ? ["unknown", b.dirty_bytes_reason ? ` (${b.dirty_bytes_reason})` : ""] : [sizeNode(b.dirty_bytes), ` (${int(b.dirty_bytes)} bytes)`]],
    ["Dirty fraction", percent(b.dirty_fraction)],
    ["Granularity", b.granularity === null ? "—" : sizeNode(b.granularity)],
    ["Flags", flagBadges(b)],
    ["State", trustBadges(b)],
  ]);
}

function tableRows(doc) {
  return doc.entries.map((e) => {
    const guest = e.guest_start === null ? "—" : `${hex(e.guest_start)} +${size(e.guest_length)}`;
    const row = [int(e.index), e.type, e.offset ? h("code", {}, offset(e.offset)) : "—", h("code", {}, guest), h("code", { class: "wrap" }, e.raw)];
    row.rowClass = `entry-${e.type}`;
    return row;
  });
}

/** The checkpoint verdict of this bitmap's name across the chain: ready or not, why, and what a backup reads. */
export function checkpointView(c) {
  const ready = c.incremental_ready === true;
  const parts = [
    h("p", { class: `notice ${ready ? "notice-ok" : "notice-bad"}`, id: "checkpoint-verdict" },
      badge(ready ? "ready" : "not ready", ready ? "ok" : "bad"), " ",
      ready
        ? "An incremental backup since this checkpoint can be taken from these bitmaps."
        : "An incremental backup since this checkpoint would miss writes: take a full backup instead."),
  ];
  if ((c.reasons || []).length) {
    parts.push(h("ul", { class: "reasons", id: "checkpoint-reasons" },
      c.reasons.map((r) => h("li", {}, r.code ? [h("code", { class: "rule" }, r.code), " "] : null, r.message || String(r)))));
  }
  if (c.sizes_known) {
    parts.push(dl([
      ["Backup reads", [sizeNode(c.backup_bytes), ` (${int(c.backup_bytes)} bytes of data)`]],
      ["Dirty", [sizeNode(c.dirty_bytes), ` in ${int(c.dirty_runs)} run${Number(c.dirty_runs) === 1 ? "" : "s"}`]],
      ["Zero (no data to copy)", sizeNode(c.zero_bytes)],
      ["Bitmaps merged", (c.merged || []).join(", ") || "—"],
      ["Layers", (c.layers || []).map((l) => `${l.image}${l.present ? "" : " (no such bitmap)"}`).join(" → ")],
    ]));
  } else if (c.sizes_reason) {
    parts.push(h("p", { class: "note" }, `Sizes not known: ${c.sizes_reason}`));
  }
  if (c.stale_reason) parts.push(h("p", { class: "note" }, c.stale_reason));
  return parts;
}

export async function bitmapView(main, params, live, app) {
  const { image, bitmapSegment: seg } = params;
  const imageHref = `#/images/${imageSegment(image)}`;
  const base = `/v1/images/${imageSegment(image)}/bitmaps/${seg}`;

  const title = h("h1", {});
  const notice = h("div", { class: "notice-box" });
  const gone = h("div", {});
  const totalsBox = h("div", {});
  const fieldsBox = h("div", {});
  const findingsBox = h("div", {});
  // The zoomed guest range (?start=&length= in the address), or the whole disk.
  const digits = (v) => (typeof v === "string" && /^[0-9]{1,20}$/.test(v) ? BigInt(v) : null);
  const view = { start: digits(params.start), length: digits(params.length) };
  const zoomed = view.start !== null && view.length !== null && view.length > 0n;
  const bitmapHref = `#/images/${imageSegment(image)}/bitmaps/${seg}`;
  const map = createDirtyMap("map", (start, length) => {
    location.hash = `${bitmapHref}?start=${start}&length=${length}`;
  });
  const zoomBar = h("div", { class: "zoom-bar" },
    h("span", { class: "hint" }, "Zoom: drag across cells, the wheel, or + and − on the focused map; 0 shows the whole disk. "),
    zoomed ? h("a", { href: bitmapHref, id: "zoom-reset", "data-key": "zoom-reset" }, "Whole disk") : null);
  const mapStatus = h("p", { class: "note", id: "map-status" });
  const runsBox = h("div", {});
  const checkpointBox = h("div", {});
  const tableBox = h("div", {});
  const tableInfo = h("p", { class: "count", id: "table-info" });
  const tablePager = h("div", { class: "pager" });
  let tableOffset = 0;
  let tableLimit = 64;

  // Every extents page up to EXTENT_PAGES, starting again when the image changes mid-walk (410).
  async function loadExtents() {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        // Only the visible range is asked for: a zoomed view of a 16 TiB disk reads its own extents.
        const range = zoomed ? `&start=${view.start}&length=${view.length}` : "";
        let doc = await app.get(`${base}/extents?limit=${EXTENT_LIMIT}${range}`);
        const extents = [...doc.extents];
        const from = BigInt(doc.start);
        const length = BigInt(doc.length);
        const disk = zoomed ? BigInt((await app.get(`${base}/extents?limit=1`)).length) : length;
        let pages = 1;
        while (doc.next !== null && pages < EXTENT_PAGES) {
          doc = await app.get(`${base}/extents?limit=${EXTENT_LIMIT}${range}&cursor=${encodeURIComponent(doc.next)}`);
          extents.push(...doc.extents);
          pages++;
        }
        const last = extents[extents.length - 1];
        const covered = doc.next === null ? from + length : last ? BigInt(last.start) + BigInt(last.length) : from;
        return { length, from, diskLength: disk, granularity: doc.granularity, extents, covered, complete: doc.next === null, pages, trusted: doc.consistent };
      } catch (err) {
        if (!(err instanceof HTTPError && err.status === 410) || attempt === 2) throw err;
      }
    }
    throw new Error("unreachable");
  }

  async function refreshMap() {
    let data;
    try {
      data = await loadExtents();
    } catch (err) {
      if (live.closed) return;
      mapStatus.textContent = `The extents could not be read: ${problemText(err)}`;
      return;
    }
    if (live.closed) return;
    map.update(data);
    const dirty = data.extents.filter((e) => e.dirty);
    const dirtyBytes = dirty.reduce((s, e) => s + BigInt(e.length), 0n);
    mapStatus.textContent = data.complete
      ? `From ${int(data.extents.length)} extents (${int(dirty.length)} dirty runs, ${int(dirtyBytes)} dirty bytes) in ${data.pages} page${data.pages === 1 ? "" : "s"}.`
      : `Only the first ${int(data.extents.length)} extents (${data.pages} pages, up to guest byte ${int(data.covered)}) were read; grey cells were not loaded.`;
    const shown = dirty.slice(0, 256);
    replace(
      runsBox,
      h(
        "details",
        { class: "runs" },
        h("summary", {}, `Dirty runs as text (${int(dirty.length)}${data.complete ? "" : "+"})`),
        shown.length
          ? table(
              "Dirty runs",
              ["Guest start", "Guest end", "Length"],
              shown.map((e) => [h("code", {}, hex(e.start)), h("code", {}, hex(BigInt(e.start) + BigInt(e.length) - 1n)), `${size(e.length)} (${int(e.length)} bytes)`]),
              { captionHidden: true },
            )
          : h("p", { class: "none" }, "No dirty bytes."),
        dirty.length > shown.length ? h("p", { class: "note" }, `The first ${shown.length} runs are listed.`) : null,
      ),
    );
  }

  function renderPager(doc) {
    const total = Number(doc.total);
    const first = total ? tableOffset + 1 : 0;
    const last = tableOffset + doc.entries.length;
    tableInfo.textContent = `Entries ${int(first)}–${int(last)} of ${int(total)}${doc.bytes_per_entry !== null ? `, each covering ${size(doc.bytes_per_entry)} of guest space` : ""}.`;
    const prev = h("button", { type: "button", id: "table-prev", "data-key": "table-prev", disabled: tableOffset === 0 }, "Previous entries");
    const next = h("button", { type: "button", id: "table-next", "data-key": "table-next", disabled: doc.next === null }, "Next entries");
    prev.addEventListener("click", () => goTable(Math.max(0, tableOffset - tableLimit)));
    next.addEventListener("click", () => goTable(Number(doc.next)));
    const select = h("select", { id: "table-limit", "data-key": "table-limit" }, TABLE_LIMITS.map((n) => h("option", { value: n, selected: n === tableLimit }, String(n))));
    select.addEventListener("change", () => {
      tableLimit = Number(select.value);
      goTable(0);
    });
    replace(tablePager, prev, next, h("span", { class: "control" }, h("label", { for: "table-limit" }, "Per page"), select));
  }

  const tablePath = () => `${base}/table?offset=${tableOffset}&limit=${tableLimit}`;
  let tableWatch = null;
  async function goTable(o) {
    tableOffset = o;
    try {
      await live.retarget(tableWatch, tablePath());
    } catch (err) {
      replace(tableBox, h("p", { class: "error" }, problemText(err)));
    }
  }

  // The entry: a 404 here is the page's answer; after that, a 404 means the bitmap went away.
  let entry = null;
  await live.watch(
    base,
    async (b, first) => {
      entry = b;
      gone.replaceChildren();
      app.setTitle(`${b.name} — ${image}`);
      app.setCrumbs([h("a", { href: imageHref }, image), h("a", { href: location.hash, "aria-current": "page" }, b.name)]);
      replace(title, h("span", { class: "kind" }, "Bitmap "), h("span", { class: "name", id: "bitmap-name" }, b.name), h("span", { class: "kind" }, " in "), h("a", { href: imageHref }, image));
      replace(notice, trustNotice(b));
      replace(totalsBox, totals(b));
      replace(fieldsBox, directoryFields(b));
      replace(findingsBox, findingsTable(b.findings, "Findings of this bitmap"));
      if (!first) {
        await refreshMap();
        app.announce("Bitmap updated");
      }
    },
    (err) => {
      if (err instanceof HTTPError && err.status === 404) {
        replace(gone, h("div", { class: "notice notice-bad", role: "alert" }, "This bitmap is no longer in the image: the page shows its last known state."));
      } else throw err;
    },
  );
  await refreshMap();
  // The readiness of this name as a checkpoint (by name: a bitmap reached by @index:N is asked by its name).
  const nameWatch = async (b) => {
    if (typeof b.name !== "string") return;
    const path = `/v1/images/${imageSegment(image)}/checkpoints/${b.name_hex ? bitmapSegment(b.name_hex) : encodeURIComponent(b.name)}`;
    try {
      await live.watch(path, (c) => replace(checkpointBox, checkpointView(c)), (err) => replace(checkpointBox, h("p", { class: "error" }, problemText(err))));
    } catch (err) {
      replace(checkpointBox, h("p", { class: "error" }, problemText(err)));
    }
  };
  // The entry the watch above already loaded: no second GET of it.
  if (entry) await nameWatch(entry);
  try {
    tableWatch = await live.watch(tablePath(), (doc) => {
      replace(tableBox, table("Bitmap table", ["Index", "Type", "Data offset", "Guest range", "Raw"], tableRows(doc), { captionHidden: true }));
      renderPager(doc);
    });
  } catch (err) {
    replace(tableBox, h("p", { class: "error" }, problemText(err)));
  }

  if (live.closed) return;
  main.replaceChildren(
    title,
    gone,
    notice,
    section("totals", "Totals", totalsBox),
    section(
      "map",
      "Dirty map",
      h("p", { class: "hint" }, "Built from ", h("code", {}, "GET …/extents"), ", the same runs a backup tool reads."),
      zoomBar,
      map.element,
      mapStatus,
      runsBox,
    ),
    section("checkpoint", "Incremental backup", checkpointBox),
    section("findings", "Findings", findingsBox),
    section("directory", "Directory entry", fieldsBox),
    section("table", "Bitmap table", tableInfo, tablePager, tableBox),
  );
}
