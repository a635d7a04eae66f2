#ifndef TSDNS_OPENSSL_SHIM_H
#define TSDNS_OPENSSL_SHIM_H
// The simulators' TLS server side (libcurl is the client side). Only functions, no macros.
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#endif
