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
#include <microhttpd.h>

/// Starts a daemon with its options in an array (MHD_start_daemon is variadic and not imported).
static inline struct MHD_Daemon *cmhd_start_daemon(unsigned int flags, uint16_t port,
                                                   MHD_AccessHandlerCallback handler, void *handler_cls,
                                                   const struct MHD_OptionItem *options) {
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
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

#endif
