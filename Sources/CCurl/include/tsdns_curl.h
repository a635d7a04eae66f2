#ifndef TSDNS_CURL_H
#define TSDNS_CURL_H
// libcurl, loaded when a command needs it, not linked: linking it makes the dynamic loader
// map and relocate it and its ~30 dependencies at every start (about 8 ms), which `--help`
// and `validate` never need.
// Only the types come from <curl/curl.h>; every call goes through these functions.
// curl_easy_setopt/getinfo are variadic, which Swift cannot call: typed wrappers.
#include <curl/curl.h>
#include <stddef.h>

/// Loads libcurl.so.4 and initialises it, once; NULL when it is ready, else why not
/// (the loader's message). Every function below calls it and fails cleanly without it.
const char *tsdns_curl_load(void);

/// Starts tsdns_curl_load on a thread of its own and returns: a command that will need
/// libcurl loads it on the second core while it parses its arguments and config. A use
/// meanwhile waits for it (pthread_once); a failure is reported there, as without it.
void tsdns_curl_load_in_background(void);

/// Waits for a load tsdns_curl_load_in_background started (none: returns at once). Call it
/// before the process exits: exit() beside a load runs the destructors of the libraries
/// being loaded while the other thread still initialises them.
void tsdns_curl_settle(void);

typedef size_t (*tsdns_curl_data_cb)(char *, size_t, size_t, void *);
typedef int (*tsdns_curl_xferinfo_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);

CURL *tsdns_curl_easy_init(void);
void tsdns_curl_easy_cleanup(CURL *handle);
void tsdns_curl_easy_reset(CURL *handle);
CURLcode tsdns_curl_easy_perform(CURL *handle);
const char *tsdns_curl_easy_strerror(CURLcode code);
struct curl_slist *tsdns_curl_slist_append(struct curl_slist *list, const char *text);
void tsdns_curl_slist_free_all(struct curl_slist *list);

CURLcode tsdns_curl_setopt_long(CURL *h, CURLoption o, long v);
CURLcode tsdns_curl_setopt_string(CURL *h, CURLoption o, const char *v);
CURLcode tsdns_curl_setopt_pointer(CURL *h, CURLoption o, void *v);
CURLcode tsdns_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v);
CURLcode tsdns_curl_setopt_data_cb(CURL *h, CURLoption o, tsdns_curl_data_cb v);
CURLcode tsdns_curl_setopt_xferinfo_cb(CURL *h, tsdns_curl_xferinfo_cb v);
CURLcode tsdns_curl_setopt_blob(CURL *h, CURLoption o, void *data, size_t len);
CURLcode tsdns_curl_getinfo_long(CURL *h, CURLINFO i, long *v);
#endif
