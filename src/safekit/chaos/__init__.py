"""The fault-injection suite (docs/chaos.md): a nemesis that breaks a mirror cluster on lab hosts
round after round, a client-side workload and ARP probe that judge what a client saw, and the
report of what was lost.

Pure pieces (the nemesis schedule, the judge, the report) are apart from the I/O (`arpprobe` and
`workload` run on the lab's client host, `harness` drives the lab), so that the rules that decide
whether a round broke the product's promise are unit-tested.
"""
