"""Cluster membership: who is alive, on which LAN, proven with the cluster key.

Pure pieces, no sockets and no clocks:

- `clusterkey`: the shared secret - generate, file format, safe loading, log-safe fingerprint.
- `wire`: the authenticated, versioned heartbeat packet (`encode`/`decode`).
- `replay`: replay protection per (peer, module), with copies of a packet on several LANs.
- `liveness`: per-peer, per-LAN timeouts reported as LanUp/LanDown/PeerUp/PeerLost events.
- `counters`: per-LAN drop/receive counters and round-trip-time statistics.
- `receiver`: the receive path tying them together in the order rule 5 requires.

The byte-level protocol is described in docs/heartbeat-protocol.md.
"""
