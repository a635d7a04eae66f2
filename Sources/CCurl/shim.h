#ifndef TSDNS_CURL_SHIM_H
#define TSDNS_CURL_SHIM_H
// Typed wrappers: curl_easy_setopt/getinfo are variadic, which Swift cannot call.
#include <curl/curl.h>

typedef size_t (*tsdns_curl_data_cb)(char *, size_t, size_t, void *);
typedef int (*tsdns_curl_xferinfo_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);

static inline CURLcode tsdns_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_ALL); }
static inline CURLcode tsdns_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode tsdns_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode tsdns_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode tsdns_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode tsdns_curl_setopt_data_cb(CURL *h, CURLoption o, tsdns_curl_data_cb v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode tsdns_curl_setopt_xferinfo_cb(CURL *h, tsdns_curl_xferinfo_cb v) { return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, v); }
static inline CURLcode tsdns_curl_setopt_blob(CURL *h, CURLoption o, void *data, size_t len) {
    struct curl_blob blob = { data, len, CURL_BLOB_COPY };
    return curl_easy_setopt(h, o, &blob);
}
static inline CURLcode tsdns_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
#endif
