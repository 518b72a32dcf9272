/// `qemu-img check`'s human output (QEMU 7.2 `dump_human_image_check`), byte for byte.
public enum QemuImgCheckText {
    /// The text for these figures: the error paragraphs (or "No errors were found"), the allocation
    /// line when both totals are non-zero, then the image end offset.
    public static func render(
        corruptions: UInt64, leaks: UInt64, checkErrors: UInt64, totalClusters: UInt64, allocatedClusters: UInt64,
        fragmentedClusters: UInt64, compressedClusters: UInt64, imageEndOffset: UInt64
    ) -> String {
        var out = ""
        if corruptions == 0 && leaks == 0 && checkErrors == 0 {
            out += "No errors were found on the image.\n"
        } else {
            if corruptions > 0 {
                out += "\n\(corruptions) errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n"
            }
            if leaks > 0 {
                out += "\n\(leaks) leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n"
            }
            if checkErrors > 0 {
                out += "\n\(checkErrors) internal errors have occurred during the check.\n"
            }
        }
        if totalClusters != 0 && allocatedClusters != 0 {
            let a = Double(allocatedClusters)
            out += "\(allocatedClusters)/\(totalClusters) = \(fixed2(a * 100.0 / Double(totalClusters)))% allocated, "
                + "\(fixed2(Double(fragmentedClusters) * 100.0 / a))% fragmented, "
                + "\(fixed2(Double(compressedClusters) * 100.0 / a))% compressed clusters\n"
        }
        if imageEndOffset != 0 { out += "Image end offset: \(imageEndOffset)\n" }
        return out
    }

    /// C's `%0.2f` of a finite, non-negative double: the exact binary value rounded half to even at
    /// the second decimal, as glibc's printf does.
    public static func fixed2(_ d: Double) -> String {
        guard d.isFinite, d > 0 else { return "0.00" }
        let m: UInt64
        let e: Int
        if d.exponentBitPattern == 0 {
            m = d.significandBitPattern
            e = -1074
        } else {
            m = (UInt64(1) << 52) | d.significandBitPattern
            e = Int(d.exponentBitPattern) - 1075
        }
        // d * 100 = m * 100 * 2^e exactly; m * 100 < 2^60.
        let scaled = UInt128(m) * 100
        let hundredths: UInt128
        if e >= 0 {
            guard e < 60 else { return "inf" }
            hundredths = scaled << UInt128(e)
        } else if -e >= 127 {
            hundredths = 0
        } else {
            let s = UInt128(-e)
            let q = scaled >> s
            let rem = scaled & ((UInt128(1) << s) - 1)
            let half = UInt128(1) << (s - 1)
            hundredths = rem > half || (rem == half && q & 1 == 1) ? q + 1 : q
        }
        let frac = hundredths % 100
        return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
    }
}
