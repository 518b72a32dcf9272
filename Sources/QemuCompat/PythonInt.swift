/// Decimal text of Python ints that do not fit 64 bits: qcow2.py prints `1 << cluster_bits` for any
/// cluster_bits a header holds.
enum PythonInt {
    /// Python 3.11's int-to-str limit (`sys.get_int_max_str_digits()`): longer ints raise ValueError.
    static let maxDigits = 4300

    /// `str(1 << bits)`; `nil` past ``maxDigits`` digits, where Python refuses too.
    static func powerOfTwo(_ bits: UInt64) -> String? {
        if bits < 64 { return String(UInt64(1) << bits) }
        // 2^14000 has 4215 digits and 2^14300 has 4305: the limit lies between.
        guard bits <= 14300 else { return nil }
        var limbs: [UInt64] = [1]  // base 10^9, least significant first
        for _ in 0..<bits {
            var carry: UInt64 = 0
            for i in limbs.indices {
                let v = limbs[i] * 2 + carry
                limbs[i] = v % 1_000_000_000
                carry = v / 1_000_000_000
            }
            if carry > 0 { limbs.append(carry) }
        }
        var s = String(limbs.last ?? 0)
        for limb in limbs.dropLast().reversed() {
            let t = String(limb)
            s += String(repeating: "0", count: 9 - t.count) + t
        }
        return s.count <= maxDigits ? s : nil
    }
}
