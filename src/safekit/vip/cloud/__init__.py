"""What the cloud VIP providers (AWS, Azure, GCP) share: retries with jittered exponential backoff
bounded by the operation's deadline (`retry`), this instance's identity from the cloud's metadata
service (`metadata`), the base class with option parsing, the OS side of an address and the call
record (`base`), the load-balancer probe listener (`lb`), and the one list of cloud API actions
and permissions each provider uses (`permissions`).

The providers themselves are `safekit.vip.aws`, `safekit.vip.azure` and `safekit.vip.gcp`; each
imports its SDK only there, so this package needs no extra.
"""
