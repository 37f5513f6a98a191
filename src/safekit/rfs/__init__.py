"""rfs: real-time synchronous file replication between the two nodes of a mirror module.

The data path is the native programs (native/: `safekit-rfs-primary`, `safekit-rfs-secondary`);
this package holds what safekitd and they share: the control channel, the spec file, the programs'
lookup, and the split-brain save the native secondary runs as a child. See docs/replication.md
for the contract (durability, order, reintegration) and the wire protocol.
"""
