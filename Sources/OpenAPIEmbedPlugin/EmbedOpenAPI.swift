import Foundation
import PackagePlugin

/// Embeds `api/openapi.yaml` and the web view (every file of the target's `UI/` folder) into the
/// daemon at build time, so the files in the repository are the one source of truth and a rebuild
/// follows every edit of them (each file is a declared input of its command; the folder listing is
/// taken anew whenever the plugin runs, so added or removed files are picked up too).
@main
struct EmbedOpenAPI: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let tool = try context.tool(named: "openapi-embed").url
        let input = context.package.directoryURL.appending(path: "api").appending(path: "openapi.yaml")
        let output = context.pluginWorkDirectoryURL.appending(path: "OpenAPIDocument.swift")
        var commands: [Command] = [
            .buildCommand(
                displayName: "Embedding api/openapi.yaml",
                executable: tool,
                arguments: [input.path(percentEncoded: false), output.path(percentEncoded: false)],
                inputFiles: [input],
                outputFiles: [output])
        ]
        // The web view: regular files directly in <target>/UI (excluded from the target's sources).
        let uiDirectory = target.directoryURL.appending(path: "UI")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: uiDirectory.path(percentEncoded: false))) ?? []
        let files = names.filter { !$0.hasPrefix(".") }.sorted().map { uiDirectory.appending(path: $0) }.filter {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0.path(percentEncoded: false), isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }
        let uiOutput = context.pluginWorkDirectoryURL.appending(path: "UIAssets.swift")
        commands.append(
            .buildCommand(
                displayName: "Embedding the web view (\(files.count) files of \(target.name)/UI)",
                executable: tool,
                arguments: ["--ui", uiOutput.path(percentEncoded: false)] + files.map { $0.path(percentEncoded: false) },
                inputFiles: files,
                outputFiles: [uiOutput]))
        return commands
    }
}
