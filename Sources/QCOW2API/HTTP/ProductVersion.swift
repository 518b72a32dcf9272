/// The version of qcowscope, shared by the daemon, the CLI and the metrics.
public enum ProductVersion {
    /// Semantic version of this build.
    public static let string = "1.0.0"
}
