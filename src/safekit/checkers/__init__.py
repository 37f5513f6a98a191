"""Checkers: probes that turn the world into resource states (`up`/`down`) for the failover rules.

`probes` does the I/O (TCP connect, ping, interface carrier, address present); `errd` matches
processes for the process monitor. What a resource going down *does* is decided by pure rules
elsewhere; nothing here changes the module's state.
"""
