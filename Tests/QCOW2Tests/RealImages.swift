import Foundation
import QCOW2TestSupport

/// The real qemu-img/qemu-io images every parser test shares, made once per test run.
enum RealImages {
    /// The factory and the images, or the error that stopped making them.
    static let shared: Result<(QemuImageFactory, [StandardImage]), any Error> = Result {
        let factory = try QemuImageFactory(prefix: "qcowscope-parser-")
        let images = try StandardImages.makeAll(in: factory)
        return (factory, images)
    }

    /// The images, or a thrown error (a failing test, never a skipped one).
    static func all() throws -> [StandardImage] {
        try shared.get().1
    }

    /// The factory that made them.
    static func factory() throws -> QemuImageFactory {
        try shared.get().0
    }

    /// The image for one scenario.
    static func image(_ s: StandardImages.Scenario) throws -> StandardImage {
        guard let i = try all().first(where: { $0.scenario == s }) else {
            throw QemuToolError.unexpectedOutput(command: "scenario \(s)", detail: "not made")
        }
        return i
    }
}
