#include "sk_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sk_fail(sk_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->reason, sizeof err->reason, fmt, ap);
        va_end(ap);
    }
    return code;
}

int sk_fail_copy(sk_err *err, const sk_err *from)
{
    if (err && err != from)
        memcpy(err, from, sizeof *err);
    return from->code;
}

const char *sk_code_name(int code)
{
    switch (code) {
    case SK_OK: return "SK_OK";
    case SK_AGAIN: return "SK_AGAIN";
    case SK_EINVAL: return "SK_EINVAL";
    case SK_EMALFORMED: return "SK_EMALFORMED";
    case SK_EMAGIC: return "SK_EMAGIC";
    case SK_EVERSION: return "SK_EVERSION";
    case SK_ETOOBIG: return "SK_ETOOBIG";
    case SK_EAUTH: return "SK_EAUTH";
    case SK_ESEQ: return "SK_ESEQ";
    case SK_EPATH: return "SK_EPATH";
    case SK_ETYPE: return "SK_ETYPE";
    case SK_ESPACE: return "SK_ESPACE";
    case SK_ECRYPTO: return "SK_ECRYPTO";
    case SK_EPEER: return "SK_EPEER";
    case SK_ESTATE: return "SK_ESTATE";
    case SK_EEXHAUSTED: return "SK_EEXHAUSTED";
    default: return "SK_E?";
    }
}
