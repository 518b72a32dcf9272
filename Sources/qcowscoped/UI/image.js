// One image (#/images/NAME): summary, bitmaps, findings, header fields, extensions, snapshots;
// each section is one API document, polled and updated in place.

import {
  badge, bitmapSegment, dl, h, hex, imageSegment, int, offset, percent, problemText, replace, sizeNode, table, timeNode, yesNo,
} from "./util.js";

/** The findings table (shared with the bitmap page). */
export function findingsTable(findings, caption) {
  if (!findings.length) return h("p", { class: "none" }, "No findings.");
  const kind = { error: "bad", warning: "warn", info: "info" };
  return table(
    caption,
    ["Severity", "Rule", "Structure", "Field", "Value", "Offset", "Message"],
    findings.map((f) => {
      const row = [
        badge(f.severity, kind[f.severity]),
        h("code", { class: "rule" }, f.code),
        f.structure,
        f.field === null ? "—" : h("code", {}, f.field),
        f.value === null ? "—" : h("code", { class: "wrap" }, f.value),
        f.offset === null ? "—" : h("code", {}, offset(f.offset)),
        f.message,
      ];
      row.rowClass = `finding finding-${f.severity}`;
      return row;
    }),
    { captionHidden: true },
  );
}

export function countsText(c) {
  if (!c) return "—";
  const parts = ["error", "warning", "info"].map((s) => `${int(c[s])} ${s}${s === "info" || Number(c[s]) === 1 ? "" : "s"}`);
  return parts.join(", ");
}

/** The badges telling whether a bitmap's data can be trusted. */
export function trustBadges(b) {
  const out = [];
  if (b.in_use) out.push(badge("in use", "bad"));
  if (!b.consistent) out.push(badge("untrustworthy", "bad"));
  else out.push(badge("consistent", "ok"));
  return out;
}

function section(id, title, ...body) {
  return h("section", { id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), ...body);
}

/** A section folded under its title (a <details>): the details after what matters first. */
function folded(id, title, ...body) {
  return h("section", { id, "aria-labelledby": `${id}-h` },
    h("details", { class: "fold" }, h("summary", {}, h("h2", { id: `${id}-h`, class: "fold-title" }, title)), ...body));
}

function summaryFields(s) {
  return dl([
    ["Format", s.format],
    ["Virtual size", sizeNode(s.virtual_size), ` (${int(s.virtual_size)} bytes)`],
    ["Disk usage", sizeNode(s.actual_size)],
    ["File size", sizeNode(s.size_bytes)],
    ["Modified", timeNode(s.mtime)],
    ["Cluster size", sizeNode(s.cluster_size)],
    ["Compat", s.compat],
    ["Compression", s.compression_type],
    ["Lazy refcounts", s.lazy_refcounts === null ? "— (version 2)" : yesNo(s.lazy_refcounts)],
    ["Extended L2", yesNo(s.extended_l2)],
    ["Refcount bits", s.refcount_bits === null ? "—" : int(s.refcount_bits)],
    ["Dirty bit", s.dirty ? badge("dirty", "warn") : "no"],
    ["Corrupt bit", s.corrupt ? badge("corrupt", "bad") : "no"],
    s.backing_file !== null
      ? ["Backing file", h("code", { class: "wrap" }, s.backing_file),
        s.backing_file_present === false ? [" ", badge("missing", "bad")] : s.backing_file_present === null ? [" ", badge("not checked", "info")] : ""]
      : ["Backing file", "none"],
    s.backing_file_format !== null ? ["Backing format", s.backing_file_format] : null,
    s.data_file !== null ? ["Data file", h("code", { class: "wrap" }, s.data_file), s.data_file_raw ? " (raw)" : ""] : null,
    ["Encryption", s.encrypted ? s.encryption_format || "yes" : "none"],
    ["Snapshots", int(s.snapshots)],
    ["Bitmaps", int(s.bitmaps_total)],
    ["Findings", countsText(s.finding_counts)],
  ].map((p) => (p && p.length > 2 ? [p[0], [p[1], p[2]]] : p)));
}

function bitmapsTable(image, doc) {
  if (!doc.bitmaps.length) {
    return h("p", { class: "none" }, doc.extension ? "The bitmaps extension lists no bitmap." : "No bitmaps extension.");
  }
  return table(
    "Bitmaps",
    ["Name", "Granularity", "Flags", "Dirty", "State"],
    doc.bitmaps.map((b) => {
      const row = [
        h("a", { href: `#/images/${imageSegment(image)}/bitmaps/${b.address}`, class: "bitmap-link" }, b.name === "" ? `(empty name, ${b.address.replace("%40", "@").replace("%3A", ":")})` : b.name),
        b.granularity === null ? "—" : sizeNode(b.granularity),
        [b.enabled ? "enabled" : "disabled", ...b.flags.filter((f) => f !== "auto").map((f) => `, ${f}`)].join(""),
        b.dirty_bytes === null
          ? h("span", { title: b.dirty_bytes_reason || "" }, "unknown")
          : [sizeNode(b.dirty_bytes), " ", h("span", { class: "breakdown" }, `(${percent(b.dirty_fraction)})`)],
        [trustBadges(b), b.inconsistent_reason ? h("span", { class: "reason" }, ` ${b.inconsistent_reason}`) : null],
      ];
      row.rowClass = b.consistent ? null : "untrusted";
      return row;
    }),
    { rowHeaders: true, captionHidden: true },
  );
}

function headerFields(doc) {
  const rows = [];
  for (const [k, v] of Object.entries(doc)) {
    if (k === "features") continue;
    let shown;
    if (v === null) shown = "—";
    else if (typeof v === "number" || typeof v === "bigint") {
      shown = /offset|magic|features$/.test(k) ? `${hex(v)} (${int(v)})` : int(v);
    } else shown = String(v);
    rows.push([h("code", {}, k), h("span", { class: "wrap" }, shown)]);
  }
  for (const [group, names] of Object.entries(doc.features || {})) {
    rows.push([h("code", {}, `features.${group}`), names.length ? names.join(", ") : "none"]);
  }
  return table("Header fields", ["Field", "Value"], rows, { captionHidden: true, class: "kv" });
}

function dataText(data) {
  if (!data) return "—";
  const out = [];
  for (const [k, v] of Object.entries(data)) {
    if (k === "entries" && Array.isArray(v)) {
      out.push(
        h(
          "ul",
          { class: "plain" },
          v.map((e) => h("li", {}, `${e.type} bit ${int(e.bit)}: `, h("code", { class: "wrap" }, e.name))),
        ),
      );
    } else {
      const s = v === null ? "null" : typeof v === "number" || typeof v === "bigint" ? (/offset/.test(k) ? offset(v) : int(v)) : String(v);
      out.push(h("div", {}, `${k}: `, h("code", { class: "wrap" }, s)));
    }
  }
  return out;
}

function extensionsTable(doc) {
  if (!doc.length) return h("p", { class: "none" }, "No header extensions.");
  return table(
    "Header extensions",
    ["Magic", "Name", "Length", "Offset", "Data"],
    doc.map((e) => [
      h("code", {}, e.magic),
      [e.name, e.truncated ? [" ", badge("truncated", "bad")] : null],
      int(e.length),
      h("code", {}, offset(e.offset)),
      dataText(e.data),
    ]),
    { captionHidden: true },
  );
}

function snapshotsTable(doc) {
  const parts = [];
  if (!doc.snapshots.length) parts.push(h("p", { class: "none" }, "No internal snapshots."));
  else {
    parts.push(
      table(
        "Snapshots",
        ["ID", "Name", "Date", "VM state", "Disk size", "L1 size", "VM clock (ns)"],
        doc.snapshots.map((s) => [
          h("code", {}, s.id),
          s.name,
          timeNode(s.date),
          sizeNode(s.vm_state_size),
          s.disk_size === null ? "—" : sizeNode(s.disk_size),
          int(s.l1_size),
          int(s.vm_clock_nsec),
        ]),
        { captionHidden: true },
      ),
    );
    if (doc.next !== null) parts.push(h("p", { class: "note" }, `Showing the first ${int(doc.snapshots.length)} of ${int(doc.total)} snapshots.`));
  }
  if (doc.findings.length) parts.push(findingsTable(doc.findings, "Snapshot table findings"));
  return parts;
}

/** One status line: a badge, what it means, and what to do about it. */
function statusItem(id, kind, label, meaning, todo) {
  return h("li", { class: `status-item status-${kind}`, id },
    badge(label, kind), " ", h("span", { class: "meaning" }, meaning), todo ? h("span", { class: "todo" }, ` ${todo}`) : null);
}

/** The status panel: who holds the image, the check's verdict, the header bits, findings by severity. */
export function statusPanel(s) {
  const items = [];
  const inUse = (s.bitmaps || []).filter((b) => (b.flags || []).includes("in-use")).length;
  if (s.writer_present === true) {
    items.push(statusItem("writer-banner", "warn", "writer present",
      "A process holds QEMU's write lock on this image (a running VM, qemu-img commit…): it is being written now.",
      inUse ? `Its ${inUse} in-use bitmap${inUse === 1 ? " is" : "s are"} expected while it runs; figures can change as you look.` : "Figures can change as you look."));
  } else if (s.writer_present === false) {
    items.push(inUse
      ? statusItem("writer-banner", "bad", "bitmaps left in use",
        `No process holds the image, yet ${inUse} bitmap${inUse === 1 ? " is" : "s are"} still flagged in use: a VM or qemu-img stopped without closing it.`,
        "The next incremental backup from them fails: take a full backup and recreate them (see Checkpoints).")
      : statusItem("writer-banner", "ok", "no writer", "No process holds QEMU's write lock: the image is at rest.", null));
  } else {
    items.push(statusItem("writer-banner", "info", "writer unknown", "The lock probe could not tell whether a process holds the image.", null));
  }
  const c = s.check || { state: "pending" };
  const when = c.checked_at ? [" Checked ", timeNode(c.checked_at), "."] : "";
  const checkText = {
    clean: ["ok", "check clean", "The refcount check found no corruption and no leak.", null],
    leaks: ["warn", "leaks", `The refcount check found ${int(c.leaks)} leaked cluster${Number(c.leaks) === 1 ? "" : "s"}: space lost, no data at risk.`,
      "qemu-img check -r leaks reclaims it while the VM is stopped."],
    corrupt: ["bad", "corrupt", `The refcount check found ${int(c.corruptions)} corruption${Number(c.corruptions) === 1 ? "" : "s"}.`,
      "Stop the VM; repair a copy with qemu-img check -r all, or restore from backup."],
    busy: ["warn", "checked while written", "A writer held the image during the check: its figures are not reliable.", "It is checked again when the writer is gone."],
    error: ["bad", "check failed", `The check could not finish (${int(c.check_errors)} error${Number(c.check_errors) === 1 ? "" : "s"}).`, "See the check document for why."],
    pending: ["info", "not checked yet", "The background check has not reached this version of the file yet.", null],
  }[c.state] || ["info", String(c.state), "", null];
  const [kind, label, meaning, todo] = checkText;
  items.push(h("li", { class: `status-item status-${kind}`, id: "check-status" }, badge(label, kind), " ",
    h("span", { class: "meaning" }, meaning, when), todo ? h("span", { class: "todo" }, ` ${todo}`) : null));
  if (s.corrupt) {
    items.push(statusItem("corrupt-bit", "bad", "corrupt bit", "QEMU found inconsistent metadata and set the corrupt bit: it refuses to write the image.",
      "Repair a copy with qemu-img check -r all, or restore from backup."));
  }
  if (s.dirty) {
    items.push(statusItem("dirty-bit", "warn", "dirty bit", "Refcounts may be stale (lazy refcounts; the image was not closed cleanly).",
      "QEMU repairs them on its next open; qemu-img check -r all does it offline."));
  }
  const f = s.finding_counts || {};
  const e = Number(f.error || 0), w = Number(f.warning || 0), i = Number(f.info || 0);
  items.push(h("li", { class: `status-item status-${e ? "bad" : w ? "warn" : "ok"}`, id: "findings-status" },
    badge(e ? "errors" : w ? "warnings" : i ? "notes only" : "no findings", e ? "bad" : w ? "warn" : "ok"), " ",
    h("span", { class: "meaning" }, e || w || i ? [`${int(e)} error${e === 1 ? "" : "s"}, ${int(w)} warning${w === 1 ? "" : "s"}, ${int(i)} info: `,
      h("a", { href: "#findings-h", class: "to-findings" }, "each with its rule, structure and file offset"), "."]
      : "The image breaks none of the format's rules.")));
  return h("ul", { class: "status-list plain" }, items);
}

const SEVERITY_RANK = { error: 0, warning: 1, info: 2 };
const SEVERITY_KIND = { error: "bad", warning: "warn", info: "info" };

/**
 * The findings grouped by rule, worst first: for each rule broken, how often, what the rule means and
 * what to do (from /v1/rules, the registry). `more`: the findings document has further pages.
 */
export function findingRules(findings, rules, more) {
  if (!findings.length) return null;
  const byCode = new Map();
  for (const f of findings) {
    const r = byCode.get(f.code) || { code: f.code, severity: f.severity, count: 0 };
    r.count += 1;
    if ((SEVERITY_RANK[f.severity] ?? 3) < (SEVERITY_RANK[r.severity] ?? 3)) r.severity = f.severity;
    byCode.set(f.code, r);
  }
  const list = [...byCode.values()].sort((a, b) => (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3)
    || b.count - a.count || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0));
  const items = list.map((r) => {
    const rule = rules.get(r.code);
    return h("li", { class: `rule-item rule-${r.severity}`, "data-code": r.code },
      badge(r.severity, SEVERITY_KIND[r.severity] || "info"), " ",
      h("strong", { class: "rule-code" }, r.code), ` ×${int(r.count)} `,
      h("span", { class: "meaning" }, rule ? rule.summary : "(a rule this page does not know)"),
      rule ? h("span", { class: "todo" }, ` What to do: ${rule.action}`) : null);
  });
  return [
    h("h3", { class: "rules-title" }, "What the findings mean"),
    h("ul", { class: "rule-list plain" }, items),
    more ? h("p", { class: "note" }, `From the first ${int(findings.length)} findings.`) : null,
  ];
}

/** The backing chain: each layer a link to its own page, with its format, size and state. */
export function chainList(doc) {
  const layers = doc.layers || [];
  const items = layers.map((l) => h("li", { class: "chain-layer", "data-depth": String(l.depth) },
    h("span", { class: "depth" }, Number(l.depth) === 0 ? "this image" : `depth ${int(l.depth)}`), " ",
    h("a", { href: `#/images/${imageSegment(l.name)}`, class: "chain-link" }, l.name), " ",
    h("span", { class: "breakdown" }, `${l.format || "?"}, ${l.virtual_size === null || l.virtual_size === undefined ? "—" : sizeNode(l.virtual_size).textContent}`),
    l.writer_present ? [" ", badge("writer present", "warn")] : null,
    l.corrupt ? [" ", badge("corrupt", "bad")] : null,
    l.finding_counts && Number(l.finding_counts.error) ? [" ", badge(`${int(l.finding_counts.error)} errors`, "bad")] : null));
  const parts = [h("ol", { class: "chain plain" }, items)];
  if (doc.complete === false) {
    const why = (doc.findings || []).map((x) => x.message).join("; ");
    parts.push(h("p", { class: "error" }, "The chain ends early", why ? `: ${why}` : "."));
  }
  return parts;
}

/** Colours of the allocation map, by kind (and, for data, by the layer that holds it). */
const ALLOC_COLOURS = {
  own: "#2f81f7",
  // Depth 1, 2, ... (deeper layers take the colours again, their legend says which depths share one).
  backing: ["#8957e5", "#bf8700", "#1a7f37", "#cf222e", "#0a7ea4", "#7d4e24"],
  zero: "#9ba6b2",
  compressed: "#db61a2",
  unallocated: null,
};

/** What an extent of /map is: no layer holds it (it reads as zeros), compressed, a zero cluster, or data. */
function allocKind(e) {
  if (!e.present) return "unallocated";
  if (e.compressed) return "compressed";
  if (e.zero || !e.data) return "zero";
  return Number(e.depth) === 0 ? "own" : "backing";
}

/** The allocation map of /map (its first page of extents): one bar over the guest disk, coloured by kind. */
export function allocationMap(doc) {
  const size = Number(doc.virtual_size);
  const width = 1000;
  const height = 28;
  const canvas = h("canvas", {
    class: "alloc-canvas", width: String(width), height: String(height), role: "img",
    "data-virtual-size": String(doc.virtual_size), "data-width": String(width),
  });
  const totals = { own: 0, backing: 0, zero: 0, compressed: 0, unallocated: 0 };
  const byDepth = new Map();
  let covered = 0;
  const ctx = canvas.getContext("2d");
  for (const e of doc.extents || []) {
    const kind = allocKind(e);
    const start = Number(e.start), length = Number(e.length);
    totals[kind] += length;
    covered = Math.max(covered, start + length);
    if (kind === "backing") byDepth.set(Number(e.depth), (byDepth.get(Number(e.depth)) || 0) + length);
    const shades = ALLOC_COLOURS.backing.length;
    const colour = kind === "backing" ? ALLOC_COLOURS.backing[(Math.max(1, Number(e.depth)) - 1) % shades] : ALLOC_COLOURS[kind];
    if (!colour || !size) continue;
    const x0 = Math.floor((start / size) * width);
    const x1 = Math.max(x0 + 1, Math.ceil(((start + length) / size) * width));
    ctx.fillStyle = colour;
    ctx.fillRect(x0, 0, x1 - x0, height);
  }
  const pct = (n) => (size ? `${((n / size) * 100).toFixed(n && n / size < 0.001 ? 3 : 1)}%` : "—");
  const label = `Allocation map of ${sizeNode(doc.virtual_size).textContent}: ${pct(totals.own)} data in this image, ${pct(totals.backing)} from backing files, ${pct(totals.zero)} zero, ${pct(totals.compressed)} compressed, ${pct(totals.unallocated)} unallocated.`;
  canvas.setAttribute("aria-label", label);
  const entry = (k, swatch, text, n, extra = {}) => h("li", { "data-kind": k, ...extra },
    h("span", { class: `swatch ${swatch}` }), ` ${text}: ${sizeNode(n).textContent} (${pct(n)})`);
  const shades = ALLOC_COLOURS.backing.length;
  const legend = h("ul", { class: "alloc-legend plain" },
    entry("own", "swatch-own", "data in this image", totals.own),
    // One entry per backing depth that holds data, in its colour.
    [...byDepth.keys()].sort((a, b) => a - b).map((d) => entry("backing", `swatch-depth-${((Math.max(1, d) - 1) % shades) + 1}`,
      `data from the backing file at depth ${int(d)}${d > shades ? ` (the colour of depth ${((d - 1) % shades) + 1})` : ""}`,
      byDepth.get(d), { "data-depth": String(d) })),
    byDepth.size ? null : entry("backing", "swatch-depth-1", "data from backing files", 0),
    entry("zero", "swatch-zero", "zero", totals.zero),
    entry("compressed", "swatch-compressed", "compressed", totals.compressed),
    entry("unallocated", "swatch-unallocated", "unallocated", totals.unallocated));
  const axis = h("div", { class: "alloc-axis" }, h("span", {}, "0"), h("span", {}, sizeNode(doc.virtual_size).textContent));
  const parts = [canvas, axis, legend];
  if (doc.next !== null && covered < size) {
    parts.push(h("p", { class: "note" }, `The first ${int((doc.extents || []).length)} extents cover the disk up to ${sizeNode(covered).textContent}; the rest is not drawn.`));
  }
  return parts;
}

export async function imageView(main, params, live, app) {
  const { image } = params;
  const base = `/v1/images/${imageSegment(image)}`;
  app.setTitle(image);
  app.setCrumbs([h("a", { href: `#/images/${imageSegment(image)}`, "aria-current": "page" }, image)]);

  const summaryBox = h("div", {});
  const statusBox = h("div", {});
  const rulesBox = h("div", { id: "finding-rules" });
  // The rule registry, once per page (it never changes while the daemon runs): what each code means.
  const rules = app.get("/v1/rules").then((doc) => new Map(doc.rules.map((r) => [r.code, r]))).catch(() => new Map());
  const mapBox = h("div", {});
  const chainBox = h("div", {});
  const statusLine = h("p", { class: "lead" });
  const bitmapsBox = h("div", {});
  const findingsBox = h("div", {});
  const headerBox = h("div", {});
  const extBox = h("div", {});
  const snapBox = h("div", {});

  function sectionError(box) {
    return (err) => replace(box, h("p", { class: "error" }, problemText(err)));
  }

  // The summary first (a 404 or 422 here is the whole page's answer), then the other documents
  // in parallel; a section whose document fails shows the problem in its place.
  await live.watch(base, (s, first) => {
    replace(summaryBox, summaryFields(s));
    replace(statusBox, statusPanel(s));
    const c = s.finding_counts;
    const worst = Number(c.error) ? badge("errors", "bad") : Number(c.warning) ? badge("warnings", "warn") : badge("ok", "ok");
    replace(statusLine, worst, ` ${sizeNode(s.virtual_size).textContent} qcow2 v${s.compat === "0.10" ? 2 : 3} image, `,
      `${int(s.bitmaps_total ?? s.bitmaps.length)} bitmap${Number(s.bitmaps_total ?? s.bitmaps.length) === 1 ? "" : "s"}, ${int(s.snapshots)} snapshot${Number(s.snapshots) === 1 ? "" : "s"}; findings: ${countsText(c)}.`);
    if (!first) app.announce("Image summary updated");
  });
  const sections = [
    // The directory: up to 10 pages of 1000 entries.
    [`${base}/bitmaps?limit=1000`, bitmapsBox, async (doc) => {
      let all = doc;
      if (doc.next !== null) {
        all = { ...doc, bitmaps: [...doc.bitmaps] };
        let cursor = doc.next;
        for (let i = 0; i < 9 && cursor !== null; i++) {
          const more = await app.get(`${base}/bitmaps?limit=1000&cursor=${encodeURIComponent(cursor)}`);
          all.bitmaps.push(...more.bitmaps);
          cursor = more.next;
        }
      }
      replace(bitmapsBox, bitmapsTable(image, all),
        all.bitmaps.length < Number(doc.total) ? h("p", { class: "note" }, `Showing ${int(all.bitmaps.length)} of ${int(doc.total)} bitmaps.`) : null);
    }],
    [`${base}/map?limit=10000`, mapBox, (doc) => replace(mapBox, allocationMap(doc))],
    [`${base}/chain`, chainBox, (doc) => replace(chainBox, chainList(doc))],
    [`${base}/findings`, findingsBox, async (doc) => {
      replace(findingsBox, findingsTable(doc.findings, "Findings"));
      replace(rulesBox, findingRules(doc.findings, await rules, doc.next !== null));
    }],
    [`${base}/header`, headerBox, (doc) => replace(headerBox, headerFields(doc))],
    [`${base}/extensions`, extBox, (doc) => replace(extBox, extensionsTable(doc))],
    [`${base}/snapshots?limit=1000`, snapBox, (doc) => replace(snapBox, snapshotsTable(doc))],
  ];
  await Promise.all(sections.map(([path, box, apply]) => live.watch(path, apply, sectionError(box)).catch(sectionError(box))));

  if (live.closed) return;
  main.replaceChildren(
    h("h1", {}, h("span", { class: "kind" }, "Image "), image),
    statusLine,
    section("status", "Status", statusBox, rulesBox),
    section("allocation", "Allocation", mapBox),
    section("chain", "Backing chain", chainBox),
    section("bitmaps", "Bitmaps", bitmapsBox),
    section("findings", "Findings", findingsBox),
    // The details, folded: open one to read it.
    folded("summary", "Summary", summaryBox),
    folded("header", "Header fields", headerBox),
    folded("extensions", "Header extensions", extBox),
    folded("snapshots", "Snapshots", snapBox),
  );
}
