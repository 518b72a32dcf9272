import Logging
import MicroHTTPD

/// The daemon's life once it listens: tell systemd, serve until SIGTERM or SIGINT, reload on SIGHUP.
struct DaemonRuntime {
    /// The running server.
    let server: HTTPServer
    /// The resolved configuration (TLS files and token, for reloads).
    let configuration: DaemonConfiguration
    /// `$NOTIFY_SOCKET`, when systemd started the daemon with `Type=notify`.
    let notifier: SystemdNotifier?
    /// The daemon's logger.
    let logger: Logger
    /// The access log, whose FILE SIGHUP opens again.
    let accessLog: AccessLogWriter
    /// How long connections of a daemon replaced by a TLS reload may take to finish.
    let drainTimeout: Duration

    /// Logs the addresses, sends `READY=1`, then handles signals until SIGTERM or SIGINT, whose name it returns.
    ///
    /// SIGHUP reads the TLS certificate and key and the token file again (``reload()``). Between signals,
    /// daemons replaced by a TLS reload are stopped once their connections are gone.
    func run() -> String {
        let scheme = server.usesTLS ? "https" : "http"
        if configuration.socketActivated {
            logger.notice(
                "using \(server.boundAddresses.count) socket(s) passed by systemd; the listen setting is ignored")
        }
        for address in server.boundAddresses {
            if address.family == .unix {
                logger.info("qcowscoped listening on \(address) (curl --unix-socket \(address.host) \(scheme)://localhost/v1/images)")
            } else {
                logger.info("qcowscoped listening on \(scheme)://\(address)")
            }
        }
        if configuration.token == nil {
            if configuration.insecureNoAuth && server.boundAddresses.contains(where: { !$0.isLoopback }) {
                logger.warning("no --token-file: anyone who can connect may read the images (--insecure-no-auth)")
            }
        }
        notify("READY=1\nSTATUS=serving \(server.boundAddresses.count) socket(s) over \(scheme)")
        while true {
            let wait: Duration = server.retiringDaemons > 0 ? .milliseconds(100) : .seconds(1)
            switch SignalWaiter.next(timeout: wait) {
            case .terminate(let name):
                notify("STOPPING=1\nSTATUS=stopping after \(name)")
                return name
            case .reload:
                reload()
            case .timeout:
                break
            }
            if server.retiringDaemons > 0 { server.stopDrainedDaemons() }
        }
    }

    /// Reads the TLS files and the token again; on any error the previous ones stay in use.
    func reload() {
        notify("RELOADING=1\nSTATUS=reloading")
        defer { notify("READY=1\nSTATUS=serving") }
        accessLog.reopen()
        if configuration.tlsFiles == nil && configuration.token == nil {
            logger.notice("received SIGHUP: nothing to reload (no --tls-cert, no --token-file)")
            return
        }
        if let files = configuration.tlsFiles {
            do throws(StartupError) {
                let credentials = try files.load()
                do throws(HTTPServerError) {
                    try server.reloadTLS(credentials, drainTimeout: drainTimeout)
                    logger.notice(
                        "received SIGHUP: serving new connections with the certificate from '\(files.certificate)'")
                } catch {
                    logger.error("received SIGHUP: TLS reload failed, still serving the previous certificate: \(error)")
                }
            } catch {
                logger.error("received SIGHUP: TLS reload failed, still serving the previous certificate: \(error)")
            }
        }
        if let token = configuration.token {
            do throws(StartupError) {
                try token.reload()
                logger.notice("received SIGHUP: reloaded the bearer tokens from '\(token.path)' (\(token.names.joined(separator: ", ")))")
            } catch {
                logger.error("received SIGHUP: token reload failed, still accepting the previous token: \(error)")
            }
        }
    }

    /// Sends a state to systemd, logging a failure at debug level.
    private func notify(_ state: String) {
        guard let notifier, let failure = notifier.send(state) else { return }
        logger.warning("cannot notify systemd: \(failure)")
    }
}
