import PackagePlugin

/// Embeds `api/openapi.yaml` into the daemon at build time, so the file in `api/` is the one source
/// of truth and a rebuild follows every edit of it (the file is a declared input of the command).
@main
struct EmbedOpenAPI: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let input = context.package.directoryURL.appending(path: "api").appending(path: "openapi.yaml")
        let output = context.pluginWorkDirectoryURL.appending(path: "OpenAPIDocument.swift")
        return [
            .buildCommand(
                displayName: "Embedding api/openapi.yaml",
                executable: try context.tool(named: "openapi-embed").url,
                arguments: [input.path(percentEncoded: false), output.path(percentEncoded: false)],
                inputFiles: [input],
                outputFiles: [output])
        ]
    }
}
