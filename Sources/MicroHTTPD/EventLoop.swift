import CMicroHTTPD
import Glibc
import Synchronization

/// One libmicrohttpd daemon without an internal thread, and the thread of its own that runs its event loop.
///
/// libmicrohttpd 0.9.75's internal epoll loop calls `epoll_wait` again, with the full timeout, whenever
/// the previous call returned exactly 128 events, before it serves any of them. With 128 or 256 clients
/// waiting for their answers at once (a load generator, a dashboard fleet polling in step) no further event
/// comes, and every one of them waits for the next connection timeout: the server hangs. This loop runs
/// the daemon in libmicrohttpd's documented external mode instead: it waits with `poll` on the daemon's
/// epoll descriptor (and on an eventfd that stops it) for at most `MHD_get_timeout`, then calls
/// `MHD_run`, which never blocks (`MHD_epoll` with a zero timeout). libmicrohttpd drops its own
/// inter-thread channel in this mode, so a connection resumed from another thread (a deferred answer,
/// ``HTTPResponder``) wakes the loop with ``wake()``.
///
/// The thread pool of ``HTTPServerConfiguration/threadPoolSize`` is one such daemon per thread on the
/// same listening socket, as libmicrohttpd's own pool is.
@safe final class EventLoop: @unchecked Sendable {
    /// Passes of every loop so far: each pass (`MHD_run`) takes the next number (see ``currentBatch``).
    private static let batches = Atomic<UInt64>(0)
    /// The thread-specific slot holding the number of the pass the loop on this thread is in.
    private static let batchKey: pthread_key_t? = {
        var key = pthread_key_t()
        return pthread_key_create(&key, nil) == 0 ? key : nil
    }()

    /// The number of the pass the event loop on the calling thread is serving; nil off a loop's thread.
    ///
    /// libmicrohttpd serves in one pass the connections epoll reported readable when the pass began,
    /// reading each once: a request served in a pass was sent before the pass began, unless its client
    /// sent it behind another request (or part of one) not yet read on the same connection (pipelining).
    /// So work done once per pass on behalf of its first request (reading the inotify queue) follows
    /// everything that happened before any other request of the pass was sent.
    static var currentBatch: UInt64? {
        guard let key = batchKey, let value = unsafe pthread_getspecific(key) else { return nil }
        return UInt64(UInt(bitPattern: value))
    }

    /// The daemon; stopped only after the loop's thread has ended.
    let handle: OpaquePointer
    /// The eventfd that wakes the loop: a connection was resumed, or the loop is to stop.
    private let wakeFD: Int32
    private let stopping = Atomic<Bool>(false)
    /// The loop's thread (set once, before anything else can read it).
    private var thread = pthread_t()
    private var started = false

    /// Starts the thread serving `handle` (a daemon started with `MHD_USE_EPOLL` and no internal thread).
    ///
    /// - Returns: nil when the eventfd or the thread cannot be made (the daemon is left to the caller).
    init?(handle: OpaquePointer) {
        self.handle = handle
        let fd = cmhd_eventfd()
        guard fd >= 0 else { return nil }
        wakeFD = fd
        let box = Unmanaged.passRetained(self)
        let rc = unsafe pthread_create(&thread, nil, { raw in
            guard let raw = unsafe raw else { return nil }
            let loop = unsafe Unmanaged<EventLoop>.fromOpaque(raw).takeRetainedValue()
            loop.run()
            return nil
        }, unsafe box.toOpaque())
        guard rc == 0 else {
            unsafe box.release()
            close(fd)
            return nil
        }
        started = true
    }

    deinit {
        close(wakeFD)
    }

    /// Makes the loop call `MHD_run` now (a connection was resumed); harmless once it stopped.
    func wake() {
        var one: UInt64 = 1
        _ = unsafe write(wakeFD, &one, 8)
    }

    /// Ends the loop and waits for its thread; the daemon can then be stopped from the calling thread.
    func stop() {
        guard started, !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake()
        _ = pthread_join(thread, nil)
    }

    /// Waits for the daemon's events or its next timeout (at most a second), then lets it serve them.
    private func run() {
        let epoll = unsafe cmhd_epoll_fd(handle)
        var fds = [pollfd(fd: epoll, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        while !stopping.load(ordering: .acquiring) {
            var timeout: UInt64 = 0
            let ms = unsafe MHD_get_timeout(handle, &timeout) == .YES ? Int32(min(timeout, 1000)) : 1000
            _ = unsafe poll(&fds, 2, ms)
            if stopping.load(ordering: .acquiring) { break }
            if fds[1].revents != 0 {
                var count: UInt64 = 0
                _ = unsafe read(wakeFD, &count, 8)
            }
            let before = unsafe cmhd_current_connections(handle)
            if let key = Self.batchKey {
                let batch = Self.batches.add(1, ordering: .relaxed).newValue
                _ = unsafe pthread_setspecific(key, UnsafeRawPointer(bitPattern: UInt(truncatingIfNeeded: batch)))
            }
            _ = unsafe MHD_run(handle)
            // Connections closed: libmicrohttpd puts a listening socket it left at the connection limit
            // back into its epoll set only at the start of a run, so run again now, not at the next event.
            if unsafe cmhd_current_connections(handle) < before { _ = unsafe MHD_run(handle) }
        }
    }
}
