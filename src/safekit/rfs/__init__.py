"""rfs: real-time synchronous file replication between the two nodes of a mirror module.

See docs/replication.md for the contract (durability, order, reintegration) and the wire protocol.
"""
