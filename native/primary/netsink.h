/* The network sink: sink.h's interface over the replication link (link.h). */
#ifndef SKP_NETSINK_H
#define SKP_NETSINK_H

#include "link.h"
#include "sink.h"

/* A sink that hands every operation to `link` (borrowed: the caller frees it after the sink). */
struct sk_sink *skp_netsink_open(struct skp_link *link);

#endif
