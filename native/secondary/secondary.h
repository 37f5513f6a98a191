/* The secondary's replication process: listens for the primary, runs the v2 handshake, receives the
 * primary's frames in order, applies each operation to the copy (apply.h), acknowledges, persists its
 * state (state.h) and speaks the control channel (channel.h), on the v2 wire; see
 * native/secondary/README.md for the design. */
#ifndef SKS_SECONDARY_H
#define SKS_SECONDARY_H

#define SKS_ACK_EVERY_OPS 256
#define SKS_ACK_EVERY_BYTES (4u << 20)
#define SKS_HANDSHAKE_SECONDS 30
#define SKS_SEND_TIMEOUT_MS 30000

/* Run the process from safekitd's spec file until `stop` or the end of stdin (exit code 0), or a
 * failure at start (the `failed` event, exit code 1). */
int sks_main(const char *spec_path);

#endif
