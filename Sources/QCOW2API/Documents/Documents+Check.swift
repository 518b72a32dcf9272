import QCOW2

extension Documents {
    /// `/v1/images/{image}/check`: the check of this file version, waiting a moment for it (the
    /// runner's ``CheckRunner/wait``); still running after that, the answer says so (`202`).
    func checkPlan(_ entry: ImageEntry, locks: LockState?) throws(DocumentError) -> Plan {
        let name = entry.file.name
        // A verdict made while a writer held the image is made again once no writer holds it.
        let stale = catalog.checks.job(of: entry, named: name)?.outcome?.state == "busy" && locks?.writerPresent == false
        guard let job = catalog.checks.job(for: entry, named: name, writerPresent: locks?.writerPresent, again: stale) else {
            throw .busy("the check pool is full: ask again in a moment")
        }
        let outcome = job.wait(catalog.checks.wait)
        // qemu-img check opens the whole backing chain and the data file first: what it cannot open.
        let chain = catalog.chain(of: entry)
        let chainRefusals = chain.findings.filter { $0.severity == .error }.map { "\($0.code): \($0.message)" }
        var plan = Plan(render: { () throws(DocumentError) in
            Self.checkDocument(name, job, outcome, locks: locks, refusals: chainRefusals)
        })
        // A new check of the same file version (the scrubber's) is a new body: a new validator.
        plan.version = (outcome == nil ? 1 : job.serial) &* 0x9e37_79b9_7f4a_7c15 &+ chain.version
        return plan
    }

    /// The check document: the finished report, or the running check's progress (with `retryAfter`).
    static func checkDocument(
        _ name: String, _ job: CheckRunner.Job, _ outcome: CheckOutcome?, locks: LockState?, refusals: [String] = []
    ) -> Document {
        guard let outcome else {
            let (done, total) = job.progress
            var d = Document(
                .object([
                    ("image", .string(name)), ("state", .string("running")),
                    ("progress", .obj(["done_bytes": .num(done), "total_bytes": .num(total)])),
                    ("started_at", .string(Timestamp.rfc3339(seconds: job.startedAt))),
                ]))
            d.retryAfter = 1
            return d
        }
        let r = outcome.report
        var o: [(String, JSONValue)] = [
            ("image", .string(name)), ("state", .string(outcome.state)),
            ("check_errors", .num(r.checkErrors)), ("corruptions", .num(r.corruptions)), ("leaks", .num(r.leaks)),
            ("corruptions_fixed", .num(r.corruptionsFixed)), ("leaks_fixed", .num(r.leaksFixed)),
            ("image_end_offset", .num(r.imageEndOffset)), ("total_clusters", .num(r.totalClusters)),
            ("allocated_clusters", .num(r.allocatedClusters)), ("fragmented_clusters", .num(r.fragmentedClusters)),
            ("compressed_clusters", .num(r.compressedClusters)),
            ("complete", .bool(r.incomplete == nil)), ("incomplete_reason", .str(r.incomplete)),
            ("qemu_refuses", .array((refusals + r.qemuRefuses).map { .string($0) })),
        ]
        // Whether a writer held the image when the check ran: its figures may then be transient.
        let writer = outcome.writerPresent ?? locks?.writerPresent
        var stale: String? = nil
        if writer == true {
            stale = "a writer held the image during the check: in-flight allocations and lazy refcounts make its figures unreliable (they are not reported as corruption)"
        } else if writer == nil {
            stale = "cannot tell whether a writer held the image during the check: \(locks?.error ?? "lock state unknown")"
        }
        o += [
            ("writer_present", writer.map { .bool($0) } ?? .null), ("stale_reason", .str(stale)),
            ("duration_ms", .num(outcome.durationMilliseconds)),
            ("checked_at", .string(Timestamp.rfc3339(seconds: outcome.checkedAt))),
            ("bytes_read", .num(r.bytesRead)),
            ("problem_counts", .object(r.problemCounts.sorted { $0.key < $1.key }.map { ($0.key, .num($0.value)) })),
            ("problems_omitted", .num(r.problemsOmitted)),
            ("problems", .array(r.problems.map(ImageViews.finding))),
        ]
        return Document(.object(o))
    }
}
