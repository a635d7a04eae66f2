#include "tsdns_curl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

// The library's soname: libcurl4 (OpenSSL) on Debian; the image installs it.
static const char *const library = "libcurl.so.4";

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *failure;
static char message[512];

static void load(void) {
    // RTLD_NOW, though RTLD_LAZY loads about 1 ms sooner: a library of a broken install that
    // lacks a function then fails here, as "cannot load libcurl.so.4: ... undefined symbol",
    // not as glibc's exit 127 at the function's first call, in the middle of a request.
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(message, sizeof message, "cannot load %s: %s", library, dlerror());
        failure = message;
        return;
    }
#define RESOLVE(field, symbol)                                                                   \
    *(void **)(&api.field) = dlsym(handle, symbol);                                             \
    if (api.field == NULL) {                                                                     \
        snprintf(message, sizeof message, "%s has no %s", library, symbol); \
        failure = message;                                                                       \
        return;                                                                                  \
    }
    RESOLVE(global_init, "curl_global_init")
    RESOLVE(easy_init, "curl_easy_init")
    RESOLVE(easy_cleanup, "curl_easy_cleanup")
    RESOLVE(easy_reset, "curl_easy_reset")
    RESOLVE(easy_perform, "curl_easy_perform")
    RESOLVE(easy_strerror, "curl_easy_strerror")
    RESOLVE(easy_setopt, "curl_easy_setopt")
    RESOLVE(easy_getinfo, "curl_easy_getinfo")
    RESOLVE(slist_append, "curl_slist_append")
    RESOLVE(slist_free_all, "curl_slist_free_all")
#undef RESOLVE
    // Before any other thread uses libcurl: curl_global_init is not thread-safe.
    CURLcode code = api.global_init(CURL_GLOBAL_ALL);
    if (code != CURLE_OK) {
        snprintf(message, sizeof message, "curl_global_init failed: %s", api.easy_strerror(code));
        failure = message;
    }
}

const char *tsdns_curl_load(void) {
    pthread_once(&once, load);
    return failure;
}

static void *load_on_thread(void *unused) {
    (void)unused;
    tsdns_curl_load();
    return NULL;
}

// Whether a background load was started; the settle may run on another thread (an async
// command resumes wherever the executor puts it).
static atomic_bool loading_in_background;

void tsdns_curl_load_in_background(void) {
    pthread_attr_t attributes;
    if (pthread_attr_init(&attributes) != 0) return;
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    // Without a thread nothing is lost: the first use loads it.
    if (pthread_create(&thread, &attributes, load_on_thread, NULL) == 0) atomic_store(&loading_in_background, true);
    pthread_attr_destroy(&attributes);
}

void tsdns_curl_settle(void) {
    if (atomic_load(&loading_in_background)) (void)tsdns_curl_load();
}

// Each entry point loads first; without libcurl a handle is never made, so the functions
// that take one are not reached, and the rest answer "failed to initialise".
#define READY (tsdns_curl_load() == NULL)

CURL *tsdns_curl_easy_init(void) { return READY ? api.easy_init() : NULL; }
void tsdns_curl_easy_cleanup(CURL *h) { if (READY && h != NULL) api.easy_cleanup(h); }
void tsdns_curl_easy_reset(CURL *h) { if (READY && h != NULL) api.easy_reset(h); }
CURLcode tsdns_curl_easy_perform(CURL *h) { return READY ? api.easy_perform(h) : CURLE_FAILED_INIT; }
const char *tsdns_curl_easy_strerror(CURLcode code) { return READY ? api.easy_strerror(code) : "libcurl is not loaded"; }
struct curl_slist *tsdns_curl_slist_append(struct curl_slist *list, const char *text) {
    return READY ? api.slist_append(list, text) : NULL;
}
void tsdns_curl_slist_free_all(struct curl_slist *list) { if (READY && list != NULL) api.slist_free_all(list); }

CURLcode tsdns_curl_setopt_long(CURL *h, CURLoption o, long v) { return READY ? api.easy_setopt(h, o, v) : CURLE_FAILED_INIT; }
CURLcode tsdns_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return READY ? api.easy_setopt(h, o, v) : CURLE_FAILED_INIT; }
CURLcode tsdns_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return READY ? api.easy_setopt(h, o, v) : CURLE_FAILED_INIT; }
CURLcode tsdns_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return READY ? api.easy_setopt(h, o, v) : CURLE_FAILED_INIT; }
CURLcode tsdns_curl_setopt_data_cb(CURL *h, CURLoption o, tsdns_curl_data_cb v) { return READY ? api.easy_setopt(h, o, v) : CURLE_FAILED_INIT; }
CURLcode tsdns_curl_setopt_xferinfo_cb(CURL *h, tsdns_curl_xferinfo_cb v) {
    return READY ? api.easy_setopt(h, CURLOPT_XFERINFOFUNCTION, v) : CURLE_FAILED_INIT;
}
CURLcode tsdns_curl_setopt_blob(CURL *h, CURLoption o, void *data, size_t len) {
    struct curl_blob blob = {data, len, CURL_BLOB_COPY};
    return READY ? api.easy_setopt(h, o, &blob) : CURLE_FAILED_INIT;
}
CURLcode tsdns_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return READY ? api.easy_getinfo(h, i, v) : CURLE_FAILED_INIT; }
