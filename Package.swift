// swift-tools-version: 6.2
import PackageDescription

/// Settings every Swift target shares: the upcoming features the server anchors enable.
let common: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The parser and API layers: every unsafe construct must be marked `unsafe`, or the build fails.
let strict: [SwiftSetting] = common + [
    .strictMemorySafety(),
    .treatWarning("StrictMemorySafety", as: .error),
]

let package = Package(
    name: "qcowscope",
        products: [
        .library(name: "QCOW2", targets: ["QCOW2"]),
        .executable(name: "qcowscoped", targets: ["qcowscoped"]),
        .executable(name: "qcowscope", targets: ["qcowscope"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Request and response heads shared by the transport and the API (no Foundation: no traits).
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0", traits: []),
    ],
    targets: [
        // Parser, model and validation. No package dependency, no Foundation: Glibc pread only.
        .target(name: "QCOW2", swiftSettings: strict),
        // QEMU qcow2.py compatibility: its dump-header / dump-header-exts output, from the parser's structures.
        .target(name: "QemuCompat", dependencies: ["QCOW2"], swiftSettings: strict),
        // libmicrohttpd as a system library with a header-only shim.
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        // libcurl as a system library with a header-only shim: the CLI's HTTP client for --server.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-gnutls-dev"])]),
        // Header-only shim for openat2 (syscall() is variadic and not imported).
        .systemLibrary(name: "CSystemShim"),
        // A small Swift wrapper over libmicrohttpd: start/stop, request in, response out.
        .target(
            name: "MicroHTTPD",
            dependencies: ["CMicroHTTPD", .product(name: "HTTPTypes", package: "swift-http-types")],
            swiftSettings: common),
        // Transport-agnostic API: routes, JSON documents, problem+json, ETags, pagination.
        .target(
            name: "QCOW2API",
            dependencies: ["QCOW2", "CSystemShim", .product(name: "HTTPTypes", package: "swift-http-types")],
            swiftSettings: strict),
        .executableTarget(
            name: "qcowscoped",
            dependencies: [
                "MicroHTTPD", "QCOW2API", "QCOW2",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            exclude: ["UI"],
            swiftSettings: common,
            plugins: ["OpenAPIEmbedPlugin"]
        ),
        // Build-time embedding of api/openapi.yaml (one source of truth, rebuilt when it changes).
        .executableTarget(name: "openapi-embed", path: "Sources/openapi-embed"),
        .plugin(
            name: "OpenAPIEmbedPlugin", capability: .buildTool(), dependencies: ["openapi-embed"],
            path: "Sources/OpenAPIEmbedPlugin"),
        .executableTarget(
            name: "qcowscope",
            dependencies: [
                "QCOW2API", "QCOW2", "QemuCompat", "CCurl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: common
        ),
        // Test support: how every test starts a tool (posix_spawn; Foundation's Process crashed in CI).
        .target(name: "CSpawnShim", path: "Tests/CSpawnShim"),
        .target(
            name: "ProcessTestSupport", dependencies: ["CSpawnShim"], path: "Tests/ProcessTestSupport",
            swiftSettings: common),
        // Test support: byte-level image builder and qemu-img/qemu-io image factory.
        .target(
            name: "QCOW2TestSupport", dependencies: ["QCOW2", "ProcessTestSupport"], path: "Tests/QCOW2TestSupport",
            swiftSettings: common),
        .testTarget(
            name: "QCOW2Tests", dependencies: ["QCOW2", "QCOW2TestSupport", "ProcessTestSupport"], swiftSettings: common),
        // A minimal HTTP/1.1 client over sockets, shared by the live tests.
        .target(name: "HTTPTestSupport", path: "Tests/HTTPTestSupport", swiftSettings: common),
        .testTarget(
            name: "MicroHTTPDTests",
            dependencies: [
                "MicroHTTPD", "HTTPTestSupport", "ProcessTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: common),
        .testTarget(
            name: "QCOW2APITests",
            dependencies: [
                "QCOW2API", "QCOW2", "QCOW2TestSupport", "ProcessTestSupport",
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: common),
        .testTarget(name: "QemuCompatTests", dependencies: ["QemuCompat", "QCOW2", "QCOW2TestSupport"], swiftSettings: common),
        .testTarget(
            name: "DaemonTests",
            dependencies: ["QCOW2", "QCOW2API", "QCOW2TestSupport", "HTTPTestSupport", "ProcessTestSupport"],
            swiftSettings: common),
    ]
)
