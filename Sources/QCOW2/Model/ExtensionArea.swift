/// The header extension area of cluster 0: its extensions, end marker and framing problems.
struct ExtensionArea {
    var extensions: [HeaderExtension] = []
    var endMarker: UInt64?
    var issues: [DecodeIssue] = []
    var end: UInt64 = 0

    /// Reads extensions from header_length up to the backing file name or the end of cluster 0.
    ///
    /// As QEMU's `qcow2_read_extensions`, the area ends at backing_file_offset whenever that is set,
    /// so a backing file name inside the header (below header_length) leaves no extensions (H20).
    static func parse(header: Header, source: any ImageSource) throws(QCOW2Error) -> ExtensionArea {
        var area = ExtensionArea()
        let start = header.extensionsStart
        var end = min(header.clusterSize, start +? Limits.maxExtensionArea ?? start)
        if header.backingFileOffset != 0 { end = max(start, min(end, header.backingFileOffset)) }
        area.end = end
        var pos = start
        // Read the area in one bounded pread (at most the cluster, at most 2 MiB), clipped to the file.
        let readEnd = min(end, source.size)
        guard readEnd > pos else { return area }
        let bytes = try source.read("header_extensions", at: pos, count: readEnd - pos)
        func at(_ off: UInt64, _ width: Int) -> UInt64 {
            ByteReader.uint(bytes, at: Int(off - start), width: width)
        }
        while pos < end {
            // QEMU reads an extension header wherever the area has not ended, and refuses one that does not fit.
            guard let next = pos +? 8, next <= end else {
                area.issues.append(.extensionHeaderCut(offset: pos, areaEnd: end))
                break
            }
            guard next <= readEnd else { break }  // the file ends first (H-rules report a short file)
            if area.extensions.count >= Limits.maxExtensions {
                area.issues.append(.tooManyExtensions(offset: pos))
                break
            }
            let magic = UInt32(truncatingIfNeeded: at(pos, 4))
            let length = UInt32(truncatingIfNeeded: at(pos + 4, 4))
            let dataEnd = next + UInt64(length)
            if magic == 0 {
                // QEMU checks the length before it looks at the magic: even the end marker must fit.
                if dataEnd > end {
                    area.issues.append(.extensionPastArea(offset: pos, magic: 0, length: length, dataEnd: dataEnd, areaEnd: end))
                }
                area.endMarker = pos
                break
            }
            var dataCount = UInt64(length)
            if dataEnd > end || dataEnd > readEnd {
                let avail = readEnd - next
                dataCount = min(avail, UInt64(length))
                area.issues.append(
                    .extensionPastArea(offset: pos, magic: magic, length: length, dataEnd: dataEnd, areaEnd: end))
            }
            let lo = Int(next - start)
            let data = Array(bytes[lo..<(lo + Int(dataCount))])
            let payload = HeaderExtension.decode(magic: magic, data: data, at: next)
            area.extensions.append(
                HeaderExtension(magic: magic, length: length, offset: pos, data: data, payload: payload))
            if dataCount < UInt64(length) { break }
            // QEMU pads the length, not the offset: after a header_length that is not a multiple of 8
            // the next header starts unaligned (and may then cross the end of the area).
            guard let padded = Checked.roundUp(UInt64(length), to: 8), let following = next +? padded else { break }
            pos = following
        }
        return area
    }
}
