"""The arbitrating witness (`safekit arbiter`): a lease service on the witness host.

It grants each mirror module's lease to one node at a time (leases.py, pure), over an
authenticated UDP protocol (wire.py, keys.py, replay.py); server.py runs it, client.py is what
safekitd uses, cli.py is `safekit arbiter`. See docs/arbiter.md.
"""
