/// Overflow-checked arithmetic for values read from an image: `nil` instead of a trap.
infix operator +? : AdditionPrecedence
infix operator *? : MultiplicationPrecedence
infix operator -? : AdditionPrecedence

/// Adds two unsigned values, `nil` on overflow.
@inlinable
func +? (lhs: UInt64, rhs: UInt64) -> UInt64? {
    let (r, o) = lhs.addingReportingOverflow(rhs)
    return o ? nil : r
}

/// Multiplies two unsigned values, `nil` on overflow.
@inlinable
func *? (lhs: UInt64, rhs: UInt64) -> UInt64? {
    let (r, o) = lhs.multipliedReportingOverflow(by: rhs)
    return o ? nil : r
}

/// Subtracts two unsigned values, `nil` when the result would be negative.
@inlinable
func -? (lhs: UInt64, rhs: UInt64) -> UInt64? {
    let (r, o) = lhs.subtractingReportingOverflow(rhs)
    return o ? nil : r
}

/// Checked helpers that read better than operators in expressions.
enum Checked {
    /// `1 << bits` for bits below 64, `nil` otherwise.
    @inlinable
    static func pow2(_ bits: UInt64) -> UInt64? {
        bits < 64 ? UInt64(1) << bits : nil
    }

    /// Rounds `value` up to a multiple of `align` (a power of two), `nil` on overflow.
    @inlinable
    static func roundUp(_ value: UInt64, to align: UInt64) -> UInt64? {
        guard align > 0, let v = value +? (align - 1) else { return nil }
        return v / align * align
    }

    /// The guest bytes that table entry `index` covers when each entry covers `per` bytes
    /// (`start` = index × per; `length` clipped to the virtual size, 0 beyond it); both nil on overflow.
    static func guestSpan(index: UInt64, per: UInt64?, virtualSize: UInt64) -> (start: UInt64?, length: UInt64?) {
        guard let per, let start = index *? per else { return (nil, nil) }
        return (start, start >= virtualSize ? 0 : min(per, virtualSize - start))
    }

    /// `ceil(a / b)` for b > 0.
    @inlinable
    static func divCeil(_ a: UInt64, _ b: UInt64) -> UInt64 {
        guard b > 0 else { return 0 }
        return a / b + (a % b == 0 ? 0 : 1)
    }
}
