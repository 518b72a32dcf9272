import Prometheus
import Synchronization

/// The registry of the per-image series, kept from one scrape to the next.
///
/// A fresh registry each scrape cost O(series²): swift-prometheus copies a metric family's label
/// dictionary for every label set it adds, and 1,000 images make 23,000 series (934 ms a scrape). Here
/// each series' gauge is made once, found again by a cheap key (name and label values), and set; a
/// series not set during a scrape (an image gone, a status changed, a figure no longer known) is
/// unregistered after it, so no stale series stays. Scrapes are serialized.
final class ImageSeries: Sendable {
    /// The series' registry (emitted by ``ImageMetrics/collect(_:maxImages:io:series:)``).
    let registry = PrometheusCollectorRegistry()
    /// What gauges of images past `--metrics-max-images` are set on: registered nowhere, never emitted.
    private let nowhere = PrometheusCollectorRegistry()

    fileprivate struct Key: Hashable, Sendable {
        let name: String
        let values: [String]
    }

    /// A gauge's handle and the scrape that last set it.
    fileprivate struct GaugeSeries: Sendable {
        let gauge: Prometheus.Gauge
        var scrape: UInt64
    }

    /// A counter's handle, the value it was brought to and the scrape that last set it.
    fileprivate struct CounterSeries: Sendable {
        let counter: Prometheus.Counter
        var value: Int64
        var scrape: UInt64
    }

    /// Every series, owned by the one scrape running (scrapes are serialized).
    fileprivate struct State: Sendable {
        var gauges: [Key: GaugeSeries] = [:]
        var counters: [Key: CounterSeries] = [:]
        var number: UInt64 = 0
    }

    private let state = Mutex(State())

    /// One scrape: `body` sets the series through the ``Scrape``; afterwards every series it did not set
    /// is removed. Returns what `body` returns.
    func scrape<T>(_ body: (inout Scrape) -> T) -> T {
        state.withLock { st in
            st.number &+= 1
            var s = Scrape(owner: self, state: st)
            st = State()
            let result = body(&s)
            st = s.state
            let now = st.number
            for (k, g) in st.gauges where g.scrape != now {
                registry.unregisterGauge(g.gauge)
                st.gauges[k] = nil
            }
            for (k, c) in st.counters where c.scrape != now {
                registry.unregisterCounter(c.counter)
                st.counters[k] = nil
            }
            return result
        }
    }

    /// The setter handed to one scrape.
    struct Scrape {
        fileprivate let owner: ImageSeries
        fileprivate var state: State
        private lazy var unexported = owner.nowhere.makeGauge(name: "qcowscope_unexported", labels: [], help: "")

        fileprivate init(owner: ImageSeries, state: State) {
            self.owner = owner
            self.state = state
        }

        /// The gauge of `name` (without the `qcowscope_` prefix) and `labels`, made on first use;
        /// `exported` false gives a gauge that is never emitted.
        mutating func gauge(_ name: String, _ help: String, _ labels: [(String, String)], exported: Bool = true) -> Prometheus.Gauge {
            guard exported else { return unexported }
            let key = Key(name: name, values: labels.map(\.1))
            let now = state.number
            if let i = state.gauges.index(forKey: key) {
                state.gauges.values[i].scrape = now
                return state.gauges.values[i].gauge
            }
            let g = owner.registry.makeGauge(
                descriptor: MetricNameDescriptor(metricName: "qcowscope_" + name, unitName: "", helpText: help), labels: labels)
            state.gauges[key] = GaugeSeries(gauge: g, scrape: now)
            return g
        }

        /// Brings the counter of `name` and `labels` to `value` (it only goes up; a smaller value, after
        /// the count started again, makes a new series).
        mutating func counter(_ name: String, _ help: String, _ labels: [(String, String)], value: Int64) {
            let key = Key(name: name, values: labels.map(\.1))
            let now = state.number
            if var c = state.counters[key], c.value <= value {
                if value > c.value { c.counter.increment(by: value - c.value) }
                c.value = value
                c.scrape = now
                state.counters[key] = c
                return
            }
            if let old = state.counters[key] { owner.registry.unregisterCounter(old.counter) }
            let c = owner.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "qcowscope_" + name, unitName: "", helpText: help), labels: labels)
            if value > 0 { c.increment(by: value) }
            state.counters[key] = CounterSeries(counter: c, value: value, scrape: now)
        }
    }
}
