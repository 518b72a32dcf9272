// qcowscoped: the read-only QCOW2 inspection daemon.
//
// SIGTERM and SIGINT are blocked here, before any thread exists, so every libmicrohttpd thread
// inherits the mask and the main thread alone receives them through sigwait.
SignalWaiter.blockTerminationSignals()
DaemonCommand.start()
