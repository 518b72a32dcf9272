import QCOW2

// The documents over a backing chain: `/map` (the allocation map, in qemu-img map's vocabulary) and
// `/chain` (the layers, in qemu-img info --backing-chain's). Their ETags and cursors carry the
// chain's version: every layer's identity.

extension Documents {
    /// The 16 hex digits a map cursor is bound to: every layer's identity (the image's among them).
    static func chainCursorVersion(_ chain: ImageChain) -> String {
        let s = String(chain.version, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// `/v1/images/{image}/map`: one page of the allocation map of the chain.
    static func mapPage(
        _ entry: ImageEntry, _ chain: ImageChain, _ map: GuestMap, start: UInt64, length: UInt64, from: UInt64,
        limit: UInt64
    ) throws(DocumentError) -> Document {
        let size = map.virtualSize
        let (sum, overflow) = start.addingReportingOverflow(length)
        let end = min(overflow ? UInt64.max : sum, size)
        let page: GuestMap.Page
        do {
            page = try map.page(from: from, to: end, limit: Int(clamping: limit))
        } catch {
            throw .unreadable(error, image: entry.file.name)
        }
        let version = chainCursorVersion(chain)
        let cursor = page.next.map { "\($0)-" + version }
        var findings = chain.findings.map(ImageViews.finding)
        findings += page.issues.map { i in
            ImageViews.finding(MapChecks.finding(i, layer: i.depth == 0 ? nil : chain.layers[i.depth].name))
        }
        let value: JSONValue = .object([
            ("image", .string(entry.file.name)), ("virtual_size", .num(size)), ("start", .num(start)),
            ("length", .num(end > start ? end - start : 0)), ("chain_complete", .bool(chain.complete)),
            ("extents", .array(page.extents.map(ImageViews.mapExtent))), ("findings", .array(findings)),
            ("next", .str(cursor)),
        ])
        let next = cursor.map { c -> [(name: String, value: String)] in
            [("start", String(start)), ("length", String(length)), ("limit", String(limit)), ("cursor", c)]
        }
        return Document(value, next: next)
    }

    /// `/v1/images/{image}/chain`: the layers from the image down.
    static func chainDocument(_ entry: ImageEntry, _ chain: ImageChain, locks: LockState?) -> Document {
        var layers: [JSONValue] = []
        for (depth, l) in chain.layers.enumerated() {
            var o: [(String, JSONValue)] = [("depth", .num(depth)), ("name", .string(l.name)), ("format", .string(l.format))]
            let length = MapLayer(raw: l.source).length
            if let image = l.image {
                let h = image.header
                o += [("virtual_size", .num(h.size & ~511)), ("cluster_size", .num(h.clusterSize))]
                ImageViews.text("backing_file", image.backingFile, into: &o)
                ImageViews.text("backing_file_format", image.backingFile == nil ? nil : image.backingFormat, into: &o)
                o.append(("backing_file_present", image.backingFile == nil ? .null : l.backingPresent.map { .bool($0) } ?? .null))
                o.append(("data_file", .str(l.dataFile?.name ?? image.dataFile?.escaped)))
                o += [
                    ("dirty", .bool(h.incompatibleFeatures & 1 != 0)), ("corrupt", .bool(h.incompatibleFeatures & 2 != 0)),
                ]
            } else {
                o += [
                    ("virtual_size", .num(length)), ("cluster_size", .null), ("backing_file", .null),
                    ("backing_file_format", .null), ("backing_file_present", .null), ("data_file", .null),
                    ("dirty", .bool(false)), ("corrupt", .bool(false)),
                ]
            }
            let layerLocks = depth == 0 ? locks : l.locks
            o.append(("writer_present", layerLocks?.writerPresent.map { .bool($0) } ?? .null))
            if depth == 0 {
                o.append(("finding_counts", ImageViews.findingCounts(entry.findingIndex)))
            } else {
                o.append(("finding_counts", .object(Finding.Severity.allCases.map { s in (s.rawValue, .num(l.findingCounts[s] ?? 0)) })))
            }
            layers.append(.object(o))
        }
        return Document(
            .object([
                ("image", .string(entry.file.name)), ("depth_limit", .num(ImageChain.depthLimit)),
                ("complete", .bool(chain.complete)), ("layers", .array(layers)),
                ("findings", .array(chain.findings.map(ImageViews.finding))),
            ]))
    }

    /// `/v1/images/{image}/allocation`: the totals of the whole map, or why they are not known.
    static func allocationDocument(_ entry: ImageEntry, _ chain: ImageChain, _ answer: AllocationAnswer) -> Document {
        let t = answer.totals
        func n(_ v: UInt64?) -> JSONValue { v.map { .num($0) } ?? .null }
        var byDepth: [JSONValue] = []
        if let t {
            for (depth, bytes) in t.dataBytesByDepth.enumerated() where depth < chain.layers.count {
                byDepth.append(.obj(["depth": .num(depth), "name": .string(chain.layers[depth].name), "data_bytes": .num(bytes)]))
            }
        }
        var findings = chain.findings.map(ImageViews.finding)
        for i in (t?.issues ?? []).prefix(1000) {
            findings.append(ImageViews.finding(MapChecks.finding(i, layer: i.depth == 0 ? nil : chain.layers[i.depth].name)))
        }
        return Document(
            .object([
                ("image", .string(entry.file.name)), ("virtual_size", .num(entry.image.header.size & ~511)),
                ("cluster_size", .num(entry.image.header.clusterSize)), ("known", .bool(t != nil)),
                ("reason", .str(answer.reason)), ("allocated_bytes", n(t?.allocatedBytes)), ("zero_bytes", n(t?.zeroBytes)),
                ("compressed_bytes", n(t?.compressedBytes)), ("unallocated_bytes", n(t?.unallocatedBytes)),
                ("data_clusters", n(t?.dataClusters)), ("compressed_clusters", n(t?.compressedClusters)),
                ("by_depth", t == nil ? .null : .array(byDepth)), ("chain_complete", .bool(chain.complete)),
                ("l2_entries_read", n(t?.l2EntriesRead)), ("findings", .array(findings)),
            ]))
    }
}
