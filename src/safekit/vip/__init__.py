"""Virtual IP providers: the contract (`provider`), the LAN provider (`arp`), and a small command
line for operators (`python -m safekit.vip`). Cloud providers register in the same entry point
group, `safekit.vip`."""

from safekit.vip.provider import (
    VipCheck,
    VipError,
    VipProvider,
    VipSpec,
    VipState,
    available_providers,
    create_provider,
    load_provider,
    parse_prefix,
    parse_vip_address,
)

__all__ = [
    "VipCheck",
    "VipError",
    "VipProvider",
    "VipSpec",
    "VipState",
    "available_providers",
    "create_provider",
    "load_provider",
    "parse_prefix",
    "parse_vip_address",
]
