public import QCOW2

/// Why a document cannot be made: the request names something that is not there, or asks wrongly.
///
/// The HTTP layer turns each case into a problem (``Problem/init(_:)``); the CLI into one line on
/// stderr and its exit status (usage errors exit 2, naming the option).
public enum DocumentError: Error, Sendable {
    /// What a parameter accepts.
    public enum Allowed: Sendable, Hashable {
        /// An integer in this range.
        case range(ClosedRange<UInt64>)
        /// A value described in words (e.g. a cursor from a previous page).
        case described(String)

        /// The words of the HTTP problem: `an integer 1...4096`.
        public var text: String {
            switch self {
            case .range(let r): "an integer \(r.lowerBound)...\(r.upperBound)"
            case .described(let d): d
            }
        }
    }

    /// No image of that name in the directory (or the name cannot name a file there).
    case imageNotFound(String)
    /// The image has no bitmap of that name.
    case bitmapNotFound(bitmap: String, image: String)
    /// No layer of the image's backing chain has a bitmap of that name.
    case checkpointNotFound(name: String, image: String)
    /// The file is not readable as qcow2.
    case unreadable(QCOW2Error, image: String)
    /// A parameter's value is not allowed.
    case invalidParameter(name: String, value: String, allowed: Allowed)
    /// The query string has a malformed percent-escape.
    case invalidQuery(String)
    /// A path segment has a malformed percent-escape.
    case invalidPath(String)
    /// A cursor was issued for an earlier version of the image.
    case staleCursor(parameter: String)
    /// The document needs something this request cannot have (e.g. the lock probe).
    case unavailable(String)
    /// The work cannot start now (the check pool is full): ask again shortly.
    case busy(String)
}
