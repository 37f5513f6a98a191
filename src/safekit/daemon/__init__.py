"""safekitd: the per-node daemon that runs application modules."""
