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

export async function imageView(main, params, live, app) {
  const { image } = params;
  const base = `/v1/images/${imageSegment(image)}`;
  app.setTitle(image);
  app.setCrumbs([h("a", { href: `#/images/${imageSegment(image)}`, "aria-current": "page" }, image)]);

  const summaryBox = h("div", {});
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
    [`${base}/findings`, findingsBox, (doc) => replace(findingsBox, findingsTable(doc.findings, "Findings"))],
    [`${base}/header`, headerBox, (doc) => replace(headerBox, headerFields(doc))],
    [`${base}/extensions`, extBox, (doc) => replace(extBox, extensionsTable(doc))],
    [`${base}/snapshots?limit=1000`, snapBox, (doc) => replace(snapBox, snapshotsTable(doc))],
  ];
  await Promise.all(sections.map(([path, box, apply]) => live.watch(path, apply, sectionError(box)).catch(sectionError(box))));

  if (live.closed) return;
  main.replaceChildren(
    h("h1", {}, h("span", { class: "kind" }, "Image "), image),
    statusLine,
    section("summary", "Summary", summaryBox),
    section("bitmaps", "Bitmaps", bitmapsBox),
    section("findings", "Findings", findingsBox),
    section("header", "Header fields", headerBox),
    section("extensions", "Header extensions", extBox),
    section("snapshots", "Snapshots", snapBox),
  );
}
