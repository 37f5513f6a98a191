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


def _jhash(expr: Json) -> Json | None:
    left = expr.get("match", {}).get("left", {})
    return left if "jhash" in left else None


def bucket_decision(rules: list[list[Json]]) -> Json:
    """What a bucket chain (`nft._bucket_chain`) decides: `key` (the hashed expression, None when
    no rule hashes) and `accepted` (the buckets whose packets it lets through)."""
    key: Json | None = None
    accepted: set[int] | None = None
    for expr in rules:
        jhash = next((_jhash(e) for e in expr if _jhash(e) is not None), None)
        if jhash is not None:
            key = key or jhash["jhash"]["expr"]
            match = next(e["match"] for e in expr if _jhash(e) is not None)
            if isinstance(match["right"], dict) and accepted is None:
                accepted = set(match["right"]["set"])  # `== {owned} accept` or `!= {owned} drop`
        elif "drop" in expr[-1] and accepted is None:
            accepted = set()
    return {"key": key, "accepted": set(range(256)) if accepted is None else accepted}


def new_flow_map(payload: Json, family: str, vip: str, proto: str, port: int | None) -> Json | None:
    """What decides a new flow (a TCP SYN, a datagram; `port` None: one whose port no lookup
    names, as ICMP) to `vip`: `bucket_decision` of the bucket chain it reaches, or None when it is
    accepted before any (neighbour discovery)."""
    table = chains(payload, family)
    (dispatch,) = table["buckets"]
    chain = _vmap_target(dispatch[-1]["vmap"], vip)
    seen = 0
    while chain is not None and seen < 8:
        seen += 1
        if chain in ("default", "default_tcp") or chain.startswith("rule_"):
            return bucket_decision(table[chain])
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
            if key == {"meta": {"key": "l4proto"}}:
                following = _vmap_target(vmap, proto)
            elif "concat" in key and port is not None:
                following = _vmap_target(vmap, {"concat": [proto, port]})
            if following is not None:
                break
        chain = following
    return None
