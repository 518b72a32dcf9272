import Metrics
import MicroHTTPD
import Prometheus
import QCOW2API
import Synchronization

/// The daemon's Prometheus metrics: request counts and latencies (swift-metrics with the swift-prometheus
/// backend, kept in this instance's registry), `qcowscope_build_info`, and the image gauges computed from
/// the catalog at every scrape (``ImageMetrics``).
///
/// Request labels are bounded: `endpoint` is a route pattern (``Route/label``), `method` is `GET`, `HEAD`
/// or `other`, `status` is one of the few codes the API answers with.
final class DaemonMetrics: Sendable {
    /// Requests answered, by `endpoint`, `method` and `status`.
    static let requestsTotal = "qcowscope_http_requests_total"
    /// Time from the request line to the response, by `endpoint` and `status`.
    static let requestDuration = "qcowscope_http_request_duration_seconds"
    /// Requests that carried a valid bearer token, by the token's name.
    static let requestsByToken = "qcowscope_http_requests_by_token_total"
    /// The `Content-Type` of the text exposition format 0.0.4.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    /// The version reported by `qcowscope_build_info`.
    static let version = ProductVersion.string

    /// Latency buckets: the API usually answers within a millisecond, cold bitmap counts take longer.
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]

    /// `# HELP` lines for the families swift-metrics creates (its factory registers them without help).
    private static let help: [(name: String, text: String)] = [
        (requestsTotal, "HTTP requests answered, by route pattern, method and status."),
        (requestsByToken, "HTTP requests that carried a valid bearer token, by the token's name in the token file."),
        (requestDuration, "Seconds from request to response, by route pattern and status."),
    ]

    private let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let catalog: ImageCatalog
    /// Images with their own series (``ImageMetrics/collect(_:maxImages:)``).
    private let maxImages: Int
    /// Where image lookups run, and their deadlines (nil: inline).
    private let io: IOPolicy?
    /// Requests being answered now (``Service`` brackets every request with begin/end).
    private let inFlight = Atomic<Int>(0)
    /// Requests answered from a prepared response (``HotAnswers``).
    private let prepared = Atomic<UInt64>(0)
    /// The background scrubber, when it runs.
    private let scrubber: Scrubber?
    private let accessLog: AccessLogWriter?

    /// Creates the registry and sets `qcowscope_build_info`.
    init(
        catalog: ImageCatalog, tls: Bool, maxImages: Int = ImageMetrics.defaultMaxImages, io: IOPolicy? = nil,
        scrubber: Scrubber? = nil, accessLog: AccessLogWriter? = nil
    ) {
        self.catalog = catalog
        self.accessLog = accessLog
        self.scrubber = scrubber
        self.io = io
        self.maxImages = maxImages
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Self.requestDuration] = Self.durationBuckets
        self.factory = factory
        registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "qcowscope_build_info", unitName: "",
                helpText:
                    "Always 1; the labels tell the qcowscoped version, libmicrohttpd version and whether TLS is on."),
            labels: [
                ("version", Self.version), ("libmicrohttpd", HTTPServer.libraryVersion),
                ("tls", tls ? "true" : "false"),
            ]
        ).set(Int64(1))
    }

    /// Marks a request as started; pair with ``requestEnded()``.
    func requestStarted() { inFlight.add(1, ordering: .relaxed) }

    /// Marks a request as answered.
    func requestEnded() { inFlight.subtract(1, ordering: .relaxed) }

    /// Counts a request answered from a prepared response (it is counted by ``recordRequest`` too).
    func preparedAnswer() { prepared.add(1, ordering: .relaxed) }

    /// The counter and the timer of one route, method and status, made once (the registry validates
    /// names and labels and takes its lock only then) and looked up by a small key afterwards.
    private struct Handles: Sendable {
        let requests: Metrics.Counter
        let duration: Metrics.Timer
    }

    /// What a request is counted by: the route (nil: `other`), the method class and the status.
    private struct HandleKey: Hashable, Sendable {
        let route: RouteID?
        let method: UInt8
        let status: Int
    }

    private let handles = Mutex<[HandleKey: Handles]>([:])
    private let tokenCounters = Mutex<[String: Metrics.Counter]>([:])

    /// Counts one answered request and records its duration, under the route's pattern (`other` when no
    /// route matched), `GET`, `HEAD` or `other`, and the status.
    func recordRequest(route: Route?, method: String, status: Int, duration: Duration) {
        let methodClass: UInt8 = method == "GET" ? 0 : method == "HEAD" ? 1 : 2
        let key = HandleKey(route: route?.id, method: methodClass, status: status)
        let h: Handles
        if let known = handles.withLock({ $0[key] }) {
            h = known
        } else {
            let endpoint = route?.label ?? "other"
            let methodLabel = methodClass == 0 ? "GET" : methodClass == 1 ? "HEAD" : "other"
            let made = Handles(
                requests: Counter(
                    label: Self.requestsTotal,
                    dimensions: [("endpoint", endpoint), ("method", methodLabel), ("status", String(status))], factory: factory),
                duration: Metrics.Timer(
                    label: Self.requestDuration, dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory))
            h = handles.withLock { all in
                if let raced = all[key] { return raced }
                // Bounded: routes x 3 methods x the statuses the API answers (a few dozen).
                if all.count < 4096 { all[key] = made }
                return made
            }
        }
        h.requests.increment()
        let (seconds, attoseconds) = duration.components
        h.duration.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// Counts one request that carried the bearer token named `name`.
    func recordToken(_ name: String) {
        let counter = tokenCounters.withLock { all -> Metrics.Counter in
            if let c = all[name] { return c }
            let c = Counter(label: Self.requestsByToken, dimensions: [("token", name)], factory: factory)
            if all.count < 4096 { all[name] = c }
            return c
        }
        counter.increment()
    }

    /// The whole exposition: request metrics and build info, then the image gauges computed now.
    func exposition() -> [UInt8] {
        var lines = String(decoding: registry.emitToBuffer(), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        for (name, text) in Self.help {
            if let index = lines.firstIndex(where: { $0.hasPrefix("# TYPE \(name) ") }) {
                lines.insert("# HELP \(name) \(text)", at: index)
            }
        }
        var text = lines.joined(separator: "\n")
        if !text.isEmpty { text += "\n" }
        text += """
            # HELP qcowscope_http_requests_in_flight Requests being answered now (this scrape included).
            # TYPE qcowscope_http_requests_in_flight gauge
            qcowscope_http_requests_in_flight \(inFlight.load(ordering: .relaxed))
            # HELP qcowscope_http_prepared_answers_total Requests answered from a prepared response kept for their target (the hot path); counted in qcowscope_http_requests_total too.
            # TYPE qcowscope_http_prepared_answers_total counter
            qcowscope_http_prepared_answers_total \(prepared.load(ordering: .relaxed))
            # HELP qcowscope_cache_hits_total Image lookups answered from the parsed-image cache.
            # TYPE qcowscope_cache_hits_total counter
            qcowscope_cache_hits_total \(catalog.cacheHits)
            # HELP qcowscope_cache_misses_total Image lookups that parsed the file (new, changed or evicted).
            # TYPE qcowscope_cache_misses_total counter
            qcowscope_cache_misses_total \(catalog.cacheMisses)
            # HELP qcowscope_access_log_dropped_lines_total Access-log lines dropped because the writer fell behind.
            # TYPE qcowscope_access_log_dropped_lines_total counter
            qcowscope_access_log_dropped_lines_total \(accessLog?.dropped ?? 0)

            """
        var executor = ""
        if let io {
            let load = io.executor.load
            executor = """
                # HELP qcowscope_io_threads I/O worker threads, by state (busy counts stuck ones too).
                # TYPE qcowscope_io_threads gauge
                qcowscope_io_threads{state="started"} \(load.threads)
                qcowscope_io_threads{state="idle"} \(load.idle)
                qcowscope_io_threads{state="stuck"} \(load.stuck)
                # HELP qcowscope_io_queued_jobs File reads and parses waiting for an I/O worker.
                # TYPE qcowscope_io_queued_jobs gauge
                qcowscope_io_queued_jobs \(load.queued)

                """
        }
        var scrub = ""
        if let s = scrubber?.stats {
            scrub = """
                # HELP qcowscope_scrub_images Images in the directory at the scrubber's last pass, and those whose check verdict is for their current file version.
                # TYPE qcowscope_scrub_images gauge
                qcowscope_scrub_images{state="total"} \(s.images)
                qcowscope_scrub_images{state="current"} \(s.current)
                # HELP qcowscope_scrub_checks_total Checks the scrubber ran, since start.
                # TYPE qcowscope_scrub_checks_total counter
                qcowscope_scrub_checks_total \(s.checks)
                # HELP qcowscope_scrub_read_bytes_total Metadata bytes the scrubber's checks read, since start.
                # TYPE qcowscope_scrub_read_bytes_total counter
                qcowscope_scrub_read_bytes_total \(s.bytesRead)
                # HELP qcowscope_scrub_passes_total Passes of the scrubber over the images directory, since start.
                # TYPE qcowscope_scrub_passes_total counter
                qcowscope_scrub_passes_total \(s.passes)
                # HELP qcowscope_scrub_busy 1 while the scrubber is checking an image.
                # TYPE qcowscope_scrub_busy gauge
                qcowscope_scrub_busy \(s.checking == nil ? 0 : 1)
                # HELP qcowscope_scrub_abandoned_total Checks the scrubber left to a stalled read and went on without, since start.
                # TYPE qcowscope_scrub_abandoned_total counter
                qcowscope_scrub_abandoned_total \(s.abandoned)

                """
        }
        return Array((text + executor + scrub).utf8) + ImageMetrics.collect(catalog, maxImages: maxImages, io: io)
    }
}
