import QCOW2
import QCOW2API

/// Gauges about the images, computed from the catalog at scrape time.
///
/// Written afresh each scrape (``ImageExposition``), so images that disappear leave no stale series. Parsed images,
/// findings and dirty counts come from the catalog's cache (re-read only when a file changes).
/// Series per image are bounded: at most ``maxBitmapsPerImage`` bitmaps of an image get per-bitmap series,
/// and at most `maxImages` images (the first by name) get per-image series; the others are still parsed and
/// counted in `qcowscope_images`, and their number is `qcowscope_images_not_exported`.
enum ImageMetrics {
    /// The default of `--metrics-max-images`.
    static let defaultMaxImages = 1000

    /// Bitmaps per image with their own series; the rest are counted in `qcowscope_image_bitmaps_not_exported`.
    static let maxBitmapsPerImage = 64

    /// The image gauges in the text format.
    static func collect(_ catalog: ImageCatalog, maxImages: Int = defaultMaxImages, io: IOPolicy? = nil) -> [UInt8] {
        let out = ImageExposition()
        collect(catalog, maxImages: maxImages, io: io, into: out)
        return out.bytes()
    }

    private static func collect(_ catalog: ImageCatalog, maxImages: Int, io: IOPolicy?, into out: ImageExposition) {
        let clock = ContinuousClock()
        let start = clock.now
        var imagesExported = 0
        var imagesNotExported = 0
        var exported = true
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> ImageExposition.Sample {
            out.sample(name, help, labels, exported: labels.isEmpty || labels[0].0 != "image" || exported)
        }
        var byStatus: [String: Int] = ["ok": 0, "findings": 0, "unreadable": 0, "stalled": 0, "pending": 0]
        // An unreadable directory exports no per-image series this scrape (qcowscope_images counts 0).
        let names = ((try? catalog.names()) ?? []).filter { catalog.isImage($0) }
        // Looked up in parallel under the deadline when the daemon has an executor; an image whose
        // storage is stalled is counted `stalled` without waiting for it.
        let lookups: [Result<(ImageEntry, AllocationAnswer, Int?, Bool?), ImageCatalog.LookupError>?]
        if let io {
            let ask = names.map { catalog.stall(named: $0, after: io.stallAfter) == nil }
            let asked = names.indices.filter { ask[$0] }.map { names[$0] }
            // One job per image, not chunks: a slow parse must not make the images queued behind it miss the wait.
            var found = io.executor.map(asked, timeout: io.listingWait) { name in
                Result { () throws(ImageCatalog.LookupError) in try Self.lookup(name, catalog) }
            }.makeIterator()
            lookups = ask.map { $0 ? (found.next() ?? nil) : nil }
        } else {
            lookups = names.map { name in Result { () throws(ImageCatalog.LookupError) in try Self.lookup(name, catalog) } }
        }
        for (name, lookup) in zip(names, lookups) {
            let image = [("image", name)]
            if imagesExported < maxImages {
                imagesExported += 1
                exported = true
            } else {
                imagesNotExported += 1
                exported = false
            }
            out.sample(
                "image_io_errors_total", "Reads of the image that failed (an errno such as EIO, or a read that ended early), since start.",
                image, kind: .counter, exported: exported
            ).set(Int64(clamping: catalog.activity(named: name).failureCount))
            let status: String
            do {
                if let lookup {
                    let (entry, allocation, notReady, writer) = try lookup.get()
                    status = record(entry, allocation: allocation, image: image, gauge: gauge)
                    if let writer {
                        gauge(
                            "image_writer_present",
                            "1 while a process holds QEMU's write lock on the image (a running VM, qemu-img commit ...): its bitmaps are in use then, not stale (lock probe, no lock taken).",
                            image
                        ).set(Int64(writer ? 1 : 0))
                    }
                    if let notReady {
                        gauge(
                            "image_checkpoints_not_ready",
                            "Bitmap names of the image's backing chain not ready for an incremental backup (K rules, from the files; a writer holding the image is not counted here). Absent for a chain of more than 64 bitmaps (/checkpoints pages their verdicts).",
                            image
                        ).set(Int64(notReady))
                    }
                    recordCheck(catalog.checks.lastOutcome(named: name), image: image, gauge: gauge)
                } else {
                    // Not done within the wait: a read of it is stuck, or it is still being parsed.
                    status = io.flatMap { catalog.stall(named: name, after: $0.stallAfter) } != nil ? "stalled" : "pending"
                }
            } catch {
                guard case .unreadable(let problem) = error else { continue }  // the file disappeared
                status = "unreadable"
                gauge(
                    "image_parse_error", "1 for an image whose header cannot be parsed, labelled with the error kind.",
                    image + [("kind", problem.kind.rawValue)]
                ).set(Int64(1))
            }
            byStatus[status, default: 0] += 1
            gauge(
                "image_status",
                "1 for each image, labelled with its status: ok, findings (warnings or errors), unreadable, stalled or pending.",
                image + [("status", status)]
            ).set(Int64(1))
        }
        for (status, count) in byStatus.sorted(by: { $0.key < $1.key }) {
            gauge("images", "qcow2 images in the directory, by status.", [("status", status)]).set(Int64(count))
        }
        gauge(
            "images_not_exported", "Images without per-image series (beyond --metrics-max-images).", []
        ).set(Int64(imagesNotExported))
        let elapsed = start.duration(to: clock.now).components
        gauge("image_metrics_collect_seconds", "Seconds spent computing the image metrics of this scrape.", []).set(
            Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
    }

    /// The image called `name`, its allocation totals (computed once per chain version), its checkpoints
    /// not ready and whether a writer holds it (probed each scrape), on an I/O thread.
    private static func lookup(_ name: String, _ catalog: ImageCatalog) throws(ImageCatalog.LookupError) -> (ImageEntry, AllocationAnswer, Int?, Bool?) {
        // Known unchanged (inotify, no event since it was parsed): probe the locks on the descriptor the
        // cached entry holds, one fcntl instead of open, fstat, fcntl and close.
        let entry: ImageEntry
        let locks: LockState?
        if let fresh = catalog.freshEntry(named: name), let source = fresh.image.source as? FileImageSource {
            (entry, locks) = (fresh, LockState.probe(fd: source.fd))
        } else {
            (entry, locks) = try catalog.lookup(named: name, probeLocks: true)
        }
        let chain = catalog.chain(of: entry)
        return (
            entry, catalog.allocation(of: chain), catalog.checkpointsNotReady(of: chain, computingUpTo: ImageCatalog.notReadyScrapeBitmaps),
            locks?.writerPresent
        )
    }

    /// Sets the gauges of one readable image and returns its status (`ok` or `findings`).
    /// The last check verdict of an image (whatever file version it was for; the age tells how old).
    private static func recordCheck(
        _ outcome: CheckOutcome?, image: [(String, String)], gauge: (String, String, [(String, String)]) -> ImageExposition.Sample
    ) {
        guard let o = outcome else { return }
        gauge("image_check_corruptions", "Corruptions the last refcount check found (as qemu-img check counts them).", image)
            .set(Int64(clamping: o.report.corruptions))
        gauge("image_check_leaks", "Leaked clusters the last refcount check found.", image).set(Int64(clamping: o.report.leaks))
        gauge("image_check_errors", "Internal errors of the last refcount check (unreadable refcounts, a check that could not finish).", image)
            .set(Int64(clamping: o.report.checkErrors + (o.report.incomplete == nil ? 0 : 1)))
        gauge("image_check_busy", "1 when a writer held the image during the last check (its figures are unreliable).", image)
            .set(Int64(o.state == "busy" ? 1 : 0))
        let age = ContinuousClock.now - o.finished
        gauge("image_check_age_seconds", "Seconds since the last refcount check of the image finished.", image)
            .set(Int64(age.components.seconds))
    }

    private static func record(
        _ entry: ImageEntry, allocation: AllocationAnswer, image: [(String, String)],
        gauge: (String, String, [(String, String)]) -> ImageExposition.Sample
    ) -> String {
        let header = entry.image.header
        if let t = allocation.totals {
            gauge("image_allocated_bytes", "Guest bytes holding data in the image or its backing chain (the map's present data; as /allocation).", image)
                .set(Int64(clamping: t.allocatedBytes))
            gauge("image_zero_bytes", "Guest bytes of zero clusters in the image or its backing chain (as /allocation).", image)
                .set(Int64(clamping: t.zeroBytes))
            gauge("image_unallocated_bytes", "Guest bytes no layer allocates (as /allocation).", image)
                .set(Int64(clamping: t.unallocatedBytes))
        }
        let findings = entry.findingIndex
        gauge("image_virtual_size_bytes", "Guest disk size in bytes.", image).set(Int64(clamping: header.size))
        gauge("image_file_size_bytes", "Size of the image file in bytes.", image).set(Int64(clamping: entry.file.size))
        gauge("image_header_dirty", "1 when the header's dirty bit is set (refcounts may be stale).", image).set(
            Int64(header.incompatibleFeatures & Header.dirtyBit != 0 ? 1 : 0))
        gauge("image_header_corrupt", "1 when the header's corrupt bit is set.", image).set(
            Int64(header.incompatibleFeatures & Header.corruptBit != 0 ? 1 : 0))
        for severity in Finding.Severity.allCases {
            gauge("image_findings", "Rules the image breaks, by severity.", image + [("severity", severity.rawValue)])
                .set(Int64(findings.count(severity)))
        }
        let bitmaps = entry.image.bitmaps
        gauge("image_bitmaps", "Persistent dirty bitmaps in the image's bitmap directory.", image).set(
            Int64(bitmaps.count))
        gauge("image_bitmaps_in_use", "Bitmaps with the in_use flag set (stale unless a VM has the image open).", image)
            .set(Int64(bitmaps.filter(\.inUse).count))
        var seen: Set<String> = []
        var exported = 0
        for bitmap in bitmaps where exported < maxBitmapsPerImage {
            let name = bitmap.name.escaped
            guard seen.insert(name).inserted else { continue }
            exported += 1
            let labels = image + [("bitmap", name)]
            gauge("bitmap_in_use", "1 when the bitmap's in_use flag is set.", labels).set(Int64(bitmap.inUse ? 1 : 0))
            if let granularity = bitmap.granularity {
                gauge("bitmap_granularity_bytes", "Guest bytes per bitmap bit.", labels).set(
                    Int64(clamping: granularity))
            }
            if let bytes = entry.dirtyCount(bitmap).bytes {
                gauge("bitmap_dirty_bytes", "Guest bytes marked dirty (exact, clipped to the disk size).", labels).set(
                    Int64(clamping: bytes))
            }
        }
        gauge(
            "image_bitmaps_not_exported",
            "Bitmaps without per-bitmap series (beyond the cap of 64 per image, or duplicate names).", image
        ).set(Int64(bitmaps.count - exported))
        return findings.hasSerious ? "findings" : "ok"
    }
}
