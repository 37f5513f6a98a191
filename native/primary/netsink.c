/* The network sink (see netsink.h): copies the front's record into the link's (the two share no
 * header: sink.h and native/common name different structs alike). */
#include "netsink.h"

#include <stdlib.h>

struct net_sink {
    struct sk_sink base;
    struct skp_link *link;
};

static uint64_t net_submit(struct sk_sink *sink, const struct sk_op *op)
{
    struct net_sink *s = (struct net_sink *)sink;
    skp_op o = {
        .type = (uint8_t)op->kind, /* sink.h's kinds are the v2 frame types, LINK 24 included */
        .dir = op->dir,
        .path = op->path,
        .path_len = op->path_len,
        .path2 = op->path2,
        .path2_len = op->path2_len,
        .offset = op->offset,
        .length = op->length,
        .size = op->size,
        .rdev = op->rdev,
        .mode = op->mode,
        .uid = op->uid,
        .gid = op->gid,
        .mask = op->mask,
        .flags = op->flags,
        .atime_ns = op->atime_ns,
        .mtime_ns = op->mtime_ns,
        .name = op->name,
        .name_len = op->name_len,
        .value = op->value,
        .value_len = op->value_len,
        .data = op->data,
        .data_len = op->data_len,
    };
    if (op->kind == SK_FSYNC)
        o.flags = (op->flags & SK_FSYNC_DATASYNC) ? 1 : 0;
    return skp_link_submit(s->link, &o);
}

static int net_barrier(struct sk_sink *sink, uint64_t ticket)
{
    struct net_sink *s = (struct net_sink *)sink;
    return skp_link_barrier(s->link, ticket);
}

static void net_close(struct sk_sink *sink)
{
    free(sink);
}

static const struct sk_sink_ops net_ops = {net_submit, net_barrier, net_close};

struct sk_sink *skp_netsink_open(struct skp_link *link)
{
    struct net_sink *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &net_ops;
    s->base.wants_data = true;
    s->link = link;
    return &s->base;
}
