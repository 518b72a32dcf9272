import Foundation
import QCOW2
import QCOW2TestSupport
import Testing

/// The rule registry is complete and closed: every rule has a crafted image that breaks it, every
/// finding any image yields is a registered rule, and the Rules.md catalogue matches the registry.
@Suite("Rule registry")
struct RuleRegistryTests {
    /// Crafted cases whose tag is a rule code (not `HDR-*`, `NAME`, `OK`, ...).
    static let ruleCases = CraftedImages.all.filter { $0.code.wholeMatch(of: /[A-Z][0-9]+/) != nil }

    /// The repository root, from this file's path.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("codes are unique, well formed, and found by Rule.withCode")
    func codesAreUnique() {
        let codes = Rule.all.map(\.code)
        #expect(Set(codes).count == codes.count, "duplicate codes: \(codes.filter { c in codes.filter { $0 == c }.count > 1 })")
        for r in Rule.all {
            #expect(r.code.wholeMatch(of: /[HXSBMCKEDT][1-9][0-9]*/) != nil, "\(r.code)")
            #expect(Rule.withCode(r.code) == r)
            #expect(!r.summary.isEmpty && !r.action.isEmpty && !r.reference.isEmpty, "\(r.code)")
            #expect(r.reference.contains("qcow2-format.md §") || r.reference.contains("QEMU "), "\(r.code): \(r.reference)")
            #expect(!r.summary.contains("\n") && !r.action.contains("\n"), "\(r.code): one line each")
        }
        #expect(Rule.withCode("Z99") == nil)
    }

    /// Rules checked by the catalog against the images directory, not by the parser: an image alone
    /// cannot break them (NewUserDefectTests breaks them with real qemu-img overlays in a directory).
    static let directoryRules: Set<Rule> = [.b1, .b2, .b3, .b4, .b5, .b6]

    /// Rules the map meets as it walks L1 and L2 tables (MapRuleTests breaks each with a patched qemu-img image).
    static let mapRules: Set<Rule> = Set(Rule.all.filter { $0.structure == .clusterTable })

    /// Rules of the refcount check (CheckRuleTests breaks each with a crafted image).
    static let checkRules: Set<Rule> = Set(Rule.all.filter { $0.code.hasPrefix("C") })

    /// Rules of checkpoint readiness, judged over a chain (CheckpointAgreementTests breaks each with real qemu-img chains).
    static let checkpointRules: Set<Rule> = Set(Rule.all.filter { $0.structure == .checkpoint })

    /// Rules an image alone, parsed, can break.
    static let parserRules: [Rule] = Rule.all.filter {
        !directoryRules.contains($0) && !mapRules.contains($0) && !checkRules.contains($0) && !checkpointRules.contains($0)
    }

    @Test("every parser rule has a crafted image that breaks it", arguments: parserRules)
    func everyRuleIsBroken(_ rule: Rule) throws {
        let cases = Self.ruleCases.filter { $0.code == rule.code }
        #expect(!cases.isEmpty, "\(rule.code) has no crafted image in CraftedImages.all")
        for c in cases {
            let image = try QCOW2Image(source: MemoryImageSource(bytes: c.bytes))
            let hits = ImageValidator.allFindings(image).filter { $0.rule == rule }
            #expect(!hits.isEmpty, "\(c.name) does not yield \(rule.code)")
            #expect(hits.contains { $0.severity == rule.severity }, "\(c.name): \(rule.code) never with severity \(rule.severity)")
        }
    }

    @Test("the crafted rule cases name exactly the registry's codes")
    func tableMatchesRegistry() {
        #expect(
            Set(Self.ruleCases.map(\.code))
                == Set(Self.parserRules.map(\.code)))
        #expect(Set(MapRuleTests.cases.map(\.code)) == Set(Self.mapRules.map(\.code)))
        #expect(Self.directoryRules.allSatisfy { $0.structure == .backingFile })
    }

    @Test("every finding of every crafted image, fuzz seed and mutation is a registered rule, with a declared severity")
    func findingsAreRegistered() throws {
        var inputs = CraftedImages.all.map(\.bytes)
        let corpus = Self.root.appendingPathComponent("Tests/Fuzz/corpus")
        for name in try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted() {
            inputs.append(Array(try Data(contentsOf: corpus.appendingPathComponent(name))))
        }
        for c in CraftedImages.all.prefix(16) {
            for i in stride(from: 0, to: min(c.bytes.count, 2048), by: 7) {
                var b = c.bytes
                b[i] ^= 0x5a
                inputs.append(b)
            }
        }
        let registered = Set(Rule.all)
        var seen: Set<String> = []
        for bytes in inputs {
            guard let image = try? QCOW2Image(source: MemoryImageSource(bytes: bytes)) else { continue }
            for f in ImageValidator.allFindings(image) {
                seen.insert(f.code)
                #expect(registered.contains(f.rule) && Rule.withCode(f.code) == f.rule, "\(f.code) is not in Rule.all")
                #expect(f.code == f.rule.code)
                #expect(f.rule.severities.contains(f.severity), "\(f.code) with undeclared severity \(f.severity)")
            }
        }
        #expect(seen.count > 40, "the corpus should exercise most rules, saw \(seen.sorted())")
    }

    /// The `### CODE` sections of Rules.md: code to the lines under its heading.
    static func catalogue() throws -> (sections: [String: [String]], headings: [String], text: String) {
        let url = Self.root.appendingPathComponent("Sources/QCOW2/QCOW2.docc/Rules.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        var sections: [String: [String]] = [:]
        var headings: [String] = []
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("### ") {
                let code = String(line.dropFirst(4)).trimmingCharacters(in: .whitespaces)
                headings.append(code)
                current = code
                sections[code] = []
            } else if line.hasPrefix("#") {
                current = nil
            } else if let c = current {
                sections[c, default: []].append(line)
            }
        }
        return (sections, headings, text)
    }

    @Test("Rules.md documents every rule with the registry's summary, severity, structure, action and reference")
    func catalogueMatchesRegistry() throws {
        let (sections, headings, text) = try Self.catalogue()
        #expect(Set(headings).count == headings.count, "a code has two sections in Rules.md")
        #expect(Set(headings) == Set(Rule.all.map(\.code)), "Rules.md sections differ from Rule.all")
        for r in Rule.all {
            let lines = try #require(sections[r.code], "Rules.md lacks \(r.code)")
            let severity = r.severity.rawValue + (r.notCheckedSeverity.map { " (\($0.rawValue) when not checked)" } ?? "")
            #expect(lines.contains(r.summary), "\(r.code): summary differs from the registry")
            #expect(lines.contains("- Severity: \(severity)"), "\(r.code): severity differs")
            #expect(lines.contains("- Structure: `\(r.structure.rawValue)`"), "\(r.code): structure differs")
            #expect(lines.contains("- What to do: \(r.action)"), "\(r.code): action differs")
            #expect(lines.contains("- Reference: \(r.reference)"), "\(r.code): reference differs")
        }
        // No code anywhere on the page (headings or prose) that the registry lacks.
        let known = Set(Rule.all.map(\.code))
        for m in text.matches(of: /\b[HXSEDTMBCK][0-9]+\b/) {
            #expect(known.contains(String(m.output)), "Rules.md mentions \(m.output), which is not in Rule.all")
        }
    }
}
