"""Follow a farm ruleset (nftables JSON, as `nft.ruleset` builds it) the way the kernel does for a
new flow to a VIP - the destination lookup, the VIP's chain, the (protocol, port) lookup - to the
bucket verdict map that decides it. For the unit tests: they assert which map (hash, group's
buckets) decides which traffic, whatever chains carry it."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def chains(payload: Json, family: str) -> dict[str, list[list[Json]]]:
    found: dict[str, list[list[Json]]] = {}
    for command in payload["nftables"]:
        add = command.get("add", {})
        if "chain" in add and add["chain"]["family"] == family:
            found.setdefault(add["chain"]["name"], [])
        if "rule" in add and add["rule"]["family"] == family:
            found.setdefault(add["rule"]["chain"], []).append(add["rule"]["expr"])
    return found


def _vmap_target(vmap: Json, key: Any) -> str | None:
    for element, verdict in vmap["data"]["set"]:
        if element == key and "goto" in verdict:
            return str(verdict["goto"]["target"])
    return None


def _is_l4(expr: Json, proto: str) -> bool:
    match = expr.get("match", {})
    return bool(match.get("left") == {"meta": {"key": "l4proto"}} and match.get("right") == proto)


def new_flow_map(payload: Json, family: str, vip: str, proto: str, port: int | None) -> Json | None:
    """The `jhash ... vmap` that decides a new flow (a TCP SYN, a datagram, `port` None: one whose
    port no lookup names, as ICMP) to `vip`, or None when no rule of the table decides it."""
    table = chains(payload, family)
    (dispatch,) = table["buckets"]
    chain = _vmap_target(dispatch[-1]["vmap"], vip)
    seen = 0
    while chain is not None and seen < 8:
        seen += 1
        following = None
        for expr in table[chain]:
            last = expr[-1]
            if "goto" in last:
                following = last["goto"]["target"]
                break
            if "accept" in last:
                if _is_l4(expr[0], "tcp"):
                    continue  # the packets of known connections: a SYN, any other protocol go on
                if "match" in expr[0] and not _is_l4(expr[0], proto):
                    continue  # a rule for another protocol
                return None  # accepted by every node (neighbour discovery)
            vmap = last.get("vmap")
            if vmap is None:
                continue
            key = vmap["key"]
            if "jhash" in key:
                return dict(vmap)
            if key == {"meta": {"key": "l4proto"}}:
                following = _vmap_target(vmap, proto)
            elif "concat" in key and port is not None:
                following = _vmap_target(vmap, {"concat": [proto, port]})
            if following is not None:
                break
        chain = following
    return None


def accepted_buckets(vmap: Json) -> set[int]:
    accepted: set[int] = set()
    for key, verdict in vmap["data"]["set"]:
        low, high = key["range"] if isinstance(key, dict) else (key, key)
        if "accept" in verdict:
            accepted |= set(range(low, high + 1))
    return accepted
