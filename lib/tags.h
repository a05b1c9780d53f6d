/*
 * Versioned namespaces and tags (see tags.c). The public functions are in tiercache.h;
 * this is what the read path needs.
 */
#ifndef TC_TAGS_H
#define TC_TAGS_H

#include "cache.h"

/* For a value with TC_REF_TAGGED: TC_OK if every tag still has the version the value
 * recorded, TC_MISS if one has moved on, or the error that prevented reading a version. */
tc_status tc__tags_current(tc_cache *c, const tc_ref *r);

#endif /* TC_TAGS_H */
