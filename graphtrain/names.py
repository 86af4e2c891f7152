"""Node and edge type names of the cross-domain heterograph (no DGL import here).

Users are one node type shared by all domains; items are typed by domain. Each
domain has a user->item edge type and its reverse, so messages flow both ways.
"""

USER = "user"


def item_type(domain: str) -> str:
    return f"item@{domain}"


def forward_etype(domain: str) -> tuple[str, str, str]:
    return (USER, f"rates@{domain}", item_type(domain))


def reverse_etype(domain: str) -> tuple[str, str, str]:
    return (item_type(domain), f"rated_by@{domain}", USER)


def etype_domain(etype: tuple[str, str, str]) -> str:
    """The domain of a forward or reverse edge type."""
    return etype[1].split("@", 1)[1]


def canonical_etypes(domains: list[str]) -> list[tuple[str, str, str]]:
    return [e for d in domains for e in (forward_etype(d), reverse_etype(d))]


def etype_key(etype: tuple[str, str, str]) -> str:
    """A string key for a canonical edge type (used in npz files and dicts)."""
    return ":".join(etype)
