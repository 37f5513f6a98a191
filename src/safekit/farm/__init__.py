"""Farm modules: all nodes active, the load spread over the healthy ones by the kernel.

- `buckets`: the bucket map (pure): 256 buckets dealt by power, sticky, the same on every node.
- `machine`: one node's farm state machine (pure): STOP / WAIT / UP, the buckets it serves.
- `nft`: the nftables rules that make each node answer only its buckets (vmac_invisible), as
  JSON; `daemon/farm_kernel.py` loads them.
- `status_codec`: what a farm node announces in its heartbeats (state, readiness), and back.

Everything here is pure: no sockets, no subprocesses, no clock.
"""
