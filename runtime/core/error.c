/* error.c — names and messages of the TR_E* codes, generated from TR_ERRNO_MAP. */
#include "troupe.h"

const char *tr_strerror(int err)
{
    switch (err) {
    case 0: return "success";
#define TR__ERR_TEXT(name, code, text) case code: return text;
    TR_ERRNO_MAP(TR__ERR_TEXT)
#undef TR__ERR_TEXT
    default: return "unknown error";
    }
}

const char *tr_errname(int err)
{
    switch (err) {
    case 0: return "OK";
#define TR__ERR_NAME(name, code, text) case code: return #name;
    TR_ERRNO_MAP(TR__ERR_NAME)
#undef TR__ERR_NAME
    default: return "UNKNOWN";
    }
}
