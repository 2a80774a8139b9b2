/* shipper_internal.h - what shipper.c and shipper_segment.c share, not
 * part of the shipper's interface (shipper.h). */
#ifndef TM_SHIPPER_INTERNAL_H
#define TM_SHIPPER_INTERNAL_H

#include "shipper.h"

/* The spool's writer for one object: written under a temporary name,
 * bound to the key it is published under (object.h). */
int shipper_spool_writer_open(struct shipper *sh, const char *key, enum object_kind kind,
                              struct object_writer **out, struct tm_error *err);

#endif
