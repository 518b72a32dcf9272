// Header-only shim for libcurl: static inline wrappers, prefixed ccurl_, no logic beyond buffering.
// curl_easy_setopt is variadic and not imported into Swift; these wrappers fix each option's type.
#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H

#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

/// A growing byte buffer with a hard maximum; `overflow` is set (and bytes dropped) past it.
typedef struct {
    char *data;
    size_t length;
    size_t capacity;
    size_t maximum;
    int overflow;
} ccurl_buffer;

/// libcurl's write and header callback: appends to a ccurl_buffer, stops the transfer past its maximum.
static size_t ccurl_append(char *bytes, size_t size, size_t count, void *user) {
    ccurl_buffer *b = (ccurl_buffer *)user;
    size_t n = size * count;
    if (n > b->maximum - b->length) {
        b->overflow = 1;
        return 0;
    }
    if (b->length + n > b->capacity) {
        size_t cap = b->capacity ? b->capacity : 16384;
        while (cap < b->length + n) cap *= 2;
        if (cap > b->maximum) cap = b->maximum;
        char *grown = (char *)realloc(b->data, cap);
        if (!grown) {
            b->overflow = 1;
            return 0;
        }
        b->data = grown;
        b->capacity = cap;
    }
    memcpy(b->data + b->length, bytes, n);
    b->length += n;
    return n;
}

/// Frees a buffer's bytes and empties it (its maximum stays).
static inline void ccurl_buffer_reset(ccurl_buffer *b) {
    free(b->data);
    b->data = NULL;
    b->length = 0;
    b->capacity = 0;
    b->overflow = 0;
}

static inline CURLcode ccurl_global_init(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }

static inline CURLcode ccurl_set_string(CURL *h, CURLoption option, const char *value) {
    return curl_easy_setopt(h, option, value);
}

static inline CURLcode ccurl_set_long(CURL *h, CURLoption option, long value) {
    return curl_easy_setopt(h, option, value);
}

static inline CURLcode ccurl_set_headers(CURL *h, struct curl_slist *list) {
    return curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
}

static inline CURLcode ccurl_set_error_buffer(CURL *h, char *buffer) {
    return curl_easy_setopt(h, CURLOPT_ERRORBUFFER, buffer);
}

/// Points the body and the header callbacks at two buffers.
static inline CURLcode ccurl_set_sinks(CURL *h, ccurl_buffer *body, ccurl_buffer *headers) {
    CURLcode c = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ccurl_append);
    if (c == CURLE_OK) c = curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    if (c == CURLE_OK) c = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, ccurl_append);
    if (c == CURLE_OK) c = curl_easy_setopt(h, CURLOPT_HEADERDATA, headers);
    return c;
}

static inline long ccurl_response_code(CURL *h) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

#endif
