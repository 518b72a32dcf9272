/*
 * floor.c: the libmicrohttpd floor of the qcowscoped benchmark.
 *
 *   floor MANIFEST THREADS [PORT [CONNECTION_LIMIT TIMEOUT]]
 *
 * Serves fixed bodies: MANIFEST has one "PATH<TAB>FILE[<TAB>FIELDS]" per line; GET PATH (query ignored,
 * as MHD hands the URL without it) answers 200 with FILE's bytes and the "Name: value" header fields of
 * FIELDS (qcowscoped's own, but Date and Content-Length; without FIELDS, Content-Type: application/json),
 * anything else 404.
 * It runs libmicrohttpd exactly the way qcowscoped's MicroHTTPD wrapper does
 * (Sources/MicroHTTPD/HTTPServer.swift, MHDCallbacks.swift):
 *   - its own listening socket (backlog 128) handed over with MHD_OPTION_LISTEN_SOCKET;
 *   - MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG, one daemon per thread (THREADS) on duplicates of
 *     the socket, each run by its own thread: poll on its epoll descriptor, then MHD_run (the
 *     wrapper's EventLoop.swift), the connection limit shared out among them;
 *   - MHD_OPTION_CONNECTION_LIMIT and MHD_OPTION_CONNECTION_TIMEOUT as given (default 1024 and 30 s,
 *     the daemon's defaults; bench.py passes the values it gives qcowscoped),
 *     MHD_OPTION_CONNECTION_MEMORY_LIMIT 32 KiB (the wrapper's default);
 *   - the first handler call only marks the request, the second one queues the response;
 *   - MHD_create_response_from_buffer(..., MHD_RESPMEM_MUST_COPY), queue, destroy.
 * What it leaves out is exactly what qcowscoped adds: routing, parsing, JSON, ETags, logging.
 * Prints "listening on 127.0.0.1:PORT" on stdout once serving; SIGTERM/SIGINT stop it (exit 0).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct route {
    char *path;
    char *body;
    size_t length;
    /* The header fields qcowscoped sends with this body (but Date and Content-Length, which
       libmicrohttpd adds): "Name: value" lines of the manifest's third column. */
    char **names;
    char **values;
    size_t field_count;
};

static struct route *routes;
static size_t route_count;
static const char not_found[] = "{\"error\":\"no such path in the floor manifest\"}\n";

static char *read_file(const char *path, size_t *length) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t capacity = 4096, used = 0;
    char *data = malloc(capacity);
    size_t n;
    while (data && (n = fread(data + used, 1, capacity - used, f)) > 0) {
        used += n;
        if (used == capacity) {
            capacity *= 2;
            data = realloc(data, capacity);
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (!data || failed) {
        free(data);
        return NULL;
    }
    *length = used;
    return data;
}

static int load_manifest(const char *manifest) {
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "floor: cannot open %s: %s\n", manifest, strerror(errno));
        return -1;
    }
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        char *fields_file = strchr(tab + 1, '\t');
        if (fields_file) *fields_file++ = 0;
        routes = realloc(routes, (route_count + 1) * sizeof *routes);
        struct route *r = &routes[route_count];
        memset(r, 0, sizeof *r);
        r->path = strdup(line);
        r->body = read_file(tab + 1, &r->length);
        if (!r->path || !r->body) {
            fprintf(stderr, "floor: cannot read %s\n", tab + 1);
            fclose(f);
            return -1;
        }
        if (fields_file) {
            FILE *hf = fopen(fields_file, "r");
            char field[4096];
            while (hf && fgets(field, sizeof field, hf)) {
                field[strcspn(field, "\r\n")] = 0;
                char *colon = strchr(field, ':');
                if (!colon) continue;
                *colon = 0;
                char *value = colon + 1;
                while (*value == ' ') value++;
                r->names = realloc(r->names, (r->field_count + 1) * sizeof *r->names);
                r->values = realloc(r->values, (r->field_count + 1) * sizeof *r->values);
                r->names[r->field_count] = strdup(field);
                r->values[r->field_count] = strdup(value);
                r->field_count++;
            }
            if (hf) fclose(hf);
        }
        route_count++;
    }
    fclose(f);
    return 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **req_cls) {
    static int seen_headers;
    (void)cls; (void)method; (void)version; (void)upload_data;
    if (*req_cls == NULL) { /* first call: headers parsed; answer on the next call */
        *req_cls = &seen_headers;
        return MHD_YES;
    }
    if (*upload_data_size > 0) { /* discard any body, like the wrapper */
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *body = not_found;
    size_t length = sizeof not_found - 1;
    unsigned int status = MHD_HTTP_NOT_FOUND;
    const struct route *found = NULL;
    for (size_t i = 0; i < route_count; i++) {
        if (strcmp(routes[i].path, url) == 0) {
            found = &routes[i];
            body = found->body;
            length = found->length;
            status = MHD_HTTP_OK;
            break;
        }
    }
    struct MHD_Response *response = MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!response) return MHD_NO;
    if (found && found->field_count) {
        for (size_t i = 0; i < found->field_count; i++) MHD_add_response_header(response, found->names[i], found->values[i]);
    } else {
        MHD_add_response_header(response, "Content-Type", "application/json");
    }
    enum MHD_Result queued = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return queued;
}

/* One external-mode daemon and the thread running its loop: poll its epoll descriptor (and the stop
   eventfd) for at most MHD_get_timeout, then MHD_run, which never blocks. */
struct loop {
    struct MHD_Daemon *daemon;
    int wake;
    atomic_int stopping;
    pthread_t thread;
};

static void *run_loop(void *argument) {
    struct loop *l = argument;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    struct pollfd fds[2] = {{.fd = info ? info->epoll_fd : -1, .events = POLLIN}, {.fd = l->wake, .events = POLLIN}};
    while (!atomic_load(&l->stopping)) {
        MHD_UNSIGNED_LONG_LONG timeout = 0;
        int ms = MHD_get_timeout(l->daemon, &timeout) == MHD_YES ? (int)(timeout < 1000 ? timeout : 1000) : 1000;
        poll(fds, 2, ms);
        if (atomic_load(&l->stopping)) break;
        MHD_run(l->daemon);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor MANIFEST THREADS [PORT [CONNECTION_LIMIT TIMEOUT]]\n");
        return 2;
    }
    if (load_manifest(argv[1]) != 0) return 1;
    unsigned int threads = (unsigned int)atoi(argv[2]);
    int port = argc > 3 ? atoi(argv[3]) : 0;
    unsigned int connection_limit = argc > 5 ? (unsigned int)atoi(argv[4]) : 1024;
    unsigned int timeout = argc > 5 ? (unsigned int)atoi(argv[5]) : 30;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0) {
        fprintf(stderr, "floor: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    socklen_t size = sizeof address;
    getsockname(fd, (struct sockaddr *)&address, &size);

    /* Block the stop signals in every thread (MHD's inherit the mask); main waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* One daemon per thread on the same socket, each in external-epoll mode run by its own loop thread,
       as the wrapper's EventLoop does (libmicrohttpd 0.9.75's internal loop hangs at 128 x k ready events). */
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (threads < 1) threads = 1;
    struct loop *loops = calloc(threads, sizeof *loops);
    for (unsigned int i = 0; loops && i < threads; i++) {
        unsigned int share = connection_limit / threads + (i < connection_limit % threads ? 1 : 0);
        int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        loops[i].daemon = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
                                           MHD_OPTION_LISTEN_SOCKET, (MHD_socket)dup_fd,
                                           MHD_OPTION_CONNECTION_LIMIT, share ? share : 1,
                                           MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                                           MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024), MHD_OPTION_END);
        loops[i].wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!loops[i].daemon || loops[i].wake < 0 || pthread_create(&loops[i].thread, NULL, run_loop, &loops[i]) != 0) {
            fprintf(stderr, "floor: MHD_start_daemon failed\n");
            return 1;
        }
    }
    if (!loops) return 1;
    printf("listening on 127.0.0.1:%d\n", ntohs(address.sin_port));
    fflush(stdout);
    int signal_number;
    sigwait(&stop, &signal_number);
    for (unsigned int i = 0; i < threads; i++) {
        uint64_t one = 1;
        atomic_store(&loops[i].stopping, 1);
        if (write(loops[i].wake, &one, sizeof one) < 0) perror("floor: write");
        pthread_join(loops[i].thread, NULL);
        MHD_stop_daemon(loops[i].daemon);
    }
    close(fd);
    return 0;
}
