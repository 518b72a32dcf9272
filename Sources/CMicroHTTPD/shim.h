// Header-only shim for libmicrohttpd: static inline wrappers, prefixed cmhd_, no logic.
#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>
#include <stddef.h>
#include <sys/un.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <microhttpd.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

/// Starts a daemon with its options in an array (MHD_start_daemon is variadic and not imported).
static inline struct MHD_Daemon *cmhd_start_daemon(unsigned int flags, uint16_t port,
                                                   MHD_AcceptPolicyCallback accept, void *accept_cls,
                                                   MHD_AccessHandlerCallback handler, void *handler_cls,
                                                   const struct MHD_OptionItem *options) {
    return MHD_start_daemon(flags, port, accept, accept_cls, handler, handler_cls,
                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
}
/// A non-blocking, close-on-exec eventfd (an event loop's wake-up), -1 with errno on failure.
static inline int cmhd_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}
/// The epoll descriptor of a daemon started with MHD_USE_EPOLL and no internal thread, -1 when none.
static inline int cmhd_epoll_fd(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info == NULL ? -1 : info->epoll_fd;
}

/// An option item carrying an integer value (MHD_OptionItem has no Swift-friendly initializer).
static inline struct MHD_OptionItem cmhd_option_int(enum MHD_OPTION option, intptr_t value) {
    struct MHD_OptionItem item = { option, value, NULL };
    return item;
}

/// An option item carrying a pointer value, for options such as MHD_OPTION_HTTPS_MEM_CERT whose argument
/// is a `const char *` (MHD_OPTION_ARRAY reads those from `ptr_value`).
static inline struct MHD_OptionItem cmhd_option_pointer(enum MHD_OPTION option, const void *pointer) {
    struct MHD_OptionItem item = { option, 0, (void *)pointer };
    return item;
}

/// Whether this libmicrohttpd was built with HTTPS support (GnuTLS): MHD_USE_TLS works only then.
static inline int cmhd_tls_supported(void) {
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

/// The terminating item of an option array.
static inline struct MHD_OptionItem cmhd_option_end(void) {
    struct MHD_OptionItem item = { MHD_OPTION_END, 0, NULL };
    return item;
}

/// An option item whose two arguments are a function pointer and its closure (the pointer goes in `value`).
#define CMHD_OPTION_CALLBACK(option, fn, cls) \
    { struct MHD_OptionItem item = { (option), (intptr_t)(fn), (cls) }; return item; }

/// MHD_OPTION_NOTIFY_COMPLETED with its callback and closure.
static inline struct MHD_OptionItem cmhd_option_notify_completed(MHD_RequestCompletedCallback fn, void *cls) {
    CMHD_OPTION_CALLBACK(MHD_OPTION_NOTIFY_COMPLETED, fn, cls)
}

/// MHD_OPTION_NOTIFY_CONNECTION with its callback and closure.
static inline struct MHD_OptionItem cmhd_option_notify_connection(MHD_NotifyConnectionCallback fn, void *cls) {
    CMHD_OPTION_CALLBACK(MHD_OPTION_NOTIFY_CONNECTION, fn, cls)
}
/// The signature MHD_OPTION_URI_LOG_CALLBACK expects (the header documents it but has no typedef).
typedef void *(*cmhd_uri_log_callback)(void *cls, const char *uri, struct MHD_Connection *connection);

/// MHD_OPTION_URI_LOG_CALLBACK: receives the request target exactly as sent, before any parsing.
static inline struct MHD_OptionItem cmhd_option_uri_log(cmhd_uri_log_callback fn, void *cls) {
    CMHD_OPTION_CALLBACK(MHD_OPTION_URI_LOG_CALLBACK, fn, cls)
}

/// An unescaper that leaves the string as it is: MHD then never percent-decodes paths or arguments.
static inline size_t cmhd_identity_unescape(void *cls, struct MHD_Connection *connection, char *s) {
    (void)cls;
    (void)connection;
    return strlen(s);
}

/// MHD_OPTION_UNESCAPE_CALLBACK with the identity unescaper.
static inline struct MHD_OptionItem cmhd_option_identity_unescape(void) {
    CMHD_OPTION_CALLBACK(MHD_OPTION_UNESCAPE_CALLBACK, cmhd_identity_unescape, NULL)
}

/// Where formatted MHD log lines go: a plain C function pointer and its context.
typedef void (*cmhd_log_sink)(void *context, const char *message);

/// The closure handed to MHD_OPTION_EXTERNAL_LOGGER; the caller owns its storage.
struct cmhd_log_target {
    cmhd_log_sink sink;
    void *context;
};

/// Formats one MHD log message (a printf format and a va_list) and passes it to the sink.
static inline void cmhd_log_format(void *cls, const char *format, va_list arguments) {
    struct cmhd_log_target *target = (struct cmhd_log_target *)cls;
    char buffer[1024];
    vsnprintf(buffer, sizeof buffer, format, arguments);
    target->sink(target->context, buffer);
}

/// MHD_OPTION_EXTERNAL_LOGGER with the formatting trampoline and a target.
static inline struct MHD_OptionItem cmhd_option_logger(struct cmhd_log_target *target) {
    CMHD_OPTION_CALLBACK(MHD_OPTION_EXTERNAL_LOGGER, cmhd_log_format, target)
}

/// The client's address (MHD_get_connection_info is variadic and not imported); NULL if unknown.
static inline const struct sockaddr *cmhd_client_address(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info == NULL ? NULL : info->client_addr;
}

/// The number of open connections of a daemon (MHD_get_daemon_info is variadic and not imported).
static inline unsigned int cmhd_current_connections(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info == NULL ? 0 : info->num_connections;
}

/// Binds `fd` to the Unix-domain socket `path`; -1 with errno (ENAMETOOLONG past sun_path) on failure.
static inline int cmhd_bind_unix(int fd, const char *path) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof address.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(address.sun_path, path, length);
    return bind(fd, (const struct sockaddr *)&address, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1));
}

/// 1 when a server accepts connections on the Unix-domain socket `path`, 0 when none does (refused).
static inline int cmhd_unix_socket_answers(const char *path) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof address.sun_path) return 0;
    memcpy(address.sun_path, path, length);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int rc = connect(fd, (const struct sockaddr *)&address, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + 1));
    close(fd);
    return rc == 0;
}

/// The path a Unix-domain socket is bound to, copied into `buffer` (NUL-terminated); its length, or -1
/// when `fd` is not a bound Unix-domain socket.
static inline int cmhd_unix_local_path(int fd, char *buffer, size_t size) {
    struct sockaddr_un address;
    socklen_t length = sizeof address;
    memset(&address, 0, sizeof address);
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0 || address.sun_family != AF_UNIX) return -1;
    size_t n = strnlen(address.sun_path, sizeof address.sun_path);
    if (n == 0 || n + 1 > size) return -1;
    memcpy(buffer, address.sun_path, n);
    buffer[n] = 0;
    return (int)n;
}

/// The uid of the process at the other end of a Unix-domain connection (SO_PEERCRED), -1 for other
/// connections. The credentials' layout is struct ucred's (pid, uid, gid), which needs _GNU_SOURCE.
static inline long long cmhd_client_peer_uid(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == NULL) return -1;
    struct { pid_t pid; uid_t uid; gid_t gid; } credentials;
    socklen_t length = sizeof credentials;
    struct sockaddr_storage peer;
    socklen_t peerLength = sizeof peer;
    if (getsockname(info->connect_fd, (struct sockaddr *)&peer, &peerLength) != 0 || peer.ss_family != AF_UNIX) return -1;
    if (getsockopt(info->connect_fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return (long long)credentials.uid;
}

/// The client certificate of a TLS connection, verified against the daemon's trust
/// (MHD_OPTION_HTTPS_MEM_TRUST): 1 verified (its subject DN copied into `subject`), 0 none presented,
/// -1 presented but not verified, -2 not a TLS connection.
static inline int cmhd_client_certificate(struct MHD_Connection *connection, char *subject, size_t size) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == NULL || info->tls_session == NULL) return -2;
    gnutls_session_t session = (gnutls_session_t)info->tls_session;
    unsigned int count = 0;
    const gnutls_datum_t *certificates = gnutls_certificate_get_peers(session, &count);
    if (certificates == NULL || count == 0) return 0;
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers2(session, &status) != GNUTLS_E_SUCCESS || status != 0) return -1;
    if (size > 0) subject[0] = 0;
    gnutls_x509_crt_t certificate;
    if (gnutls_x509_crt_init(&certificate) != GNUTLS_E_SUCCESS) return 1;
    if (gnutls_x509_crt_import(certificate, &certificates[0], GNUTLS_X509_FMT_DER) == GNUTLS_E_SUCCESS && size > 0) {
        size_t length = size;
        if (gnutls_x509_crt_get_dn(certificate, subject, &length) != GNUTLS_E_SUCCESS) subject[0] = 0;
        subject[size - 1] = 0;
    }
    gnutls_x509_crt_deinit(certificate);
    return 1;
}

#endif
