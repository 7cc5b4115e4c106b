"""A key's IP allowlist: addresses and networks it may be used from.

Validated strictly when an admin sets it (``validate_allowed_ips``), stored as
canonical text, parsed into networks once per cached key (``parse_networks``),
and checked per request only for keys that have one (``address_allowed``).
"""

import functools
import ipaddress

ALLOWED_IPS_MAX = 100  # entries per key
ENTRY_MAX = 64  # characters per entry (the longest IPv6 CIDR is 43)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


class BadAllowlist(ValueError):
    pass


def canonical_network(text: str) -> str:
    """``text`` as an address or CIDR in canonical form; BadAllowlist if it is
    not one, has host bits set, or names IPv4 through IPv6 (write it as IPv4:
    a client's IPv4-mapped address is compared as IPv4)."""
    if not isinstance(text, str) or not text or len(text) > ENTRY_MAX or text != text.strip() or "%" in text:
        raise BadAllowlist(f"{str(text)[:ENTRY_MAX]!r} is not an IP address or CIDR")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise BadAllowlist(f"{text!r} is not an IP address or CIDR without host bits ({error})") from None
    if network.version == 6 and network.subnet_of(_MAPPED):
        raise BadAllowlist(f"{text!r} is an IPv4-mapped IPv6 range: write it as IPv4")
    return str(network)


def validate_allowed_ips(value) -> list[str]:
    """The allowlist as canonical strings, without repeats; [] = from anywhere."""
    if not isinstance(value, list):
        raise BadAllowlist("must be a list of IP addresses or CIDRs")
    if len(value) > ALLOWED_IPS_MAX:
        raise BadAllowlist(f"must have at most {ALLOWED_IPS_MAX} entries")
    return list(dict.fromkeys(canonical_network(item) for item in value))


def parse_networks(allowed_ips) -> tuple:
    """Stored allowlist text (canonical, see above) as ``ip_network`` objects."""
    return tuple(ipaddress.ip_network(item) for item in allowed_ips)


@functools.lru_cache(maxsize=1024)
def _client_ip(text: str):
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def address_allowed(networks: tuple, client: str) -> bool:
    """Whether the client address (text, as ``identity.client_address`` gives
    it) is in one of ``networks``. An address that does not parse is not."""
    address = _client_ip(client)
    return address is not None and any(address in network for network in networks)
