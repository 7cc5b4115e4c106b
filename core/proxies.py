"""Who the client is when a request may have come through a proxy.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are set by whoever sends the
request, so they are believed only from a configured trusted proxy
(``COMFYUI_API_AUTH_TRUSTED_PROXIES``), never from anyone else.
"""

import ipaddress

CACHE_MAX = 1024  # bound of the address -> trusted? cache


def _parse_address(text: str):
    """An ``ip_address``, IPv4-mapped IPv6 turned into IPv4; None if not an address."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def is_loopback(address) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, IPv4-mapped, bracketed)
    or ``localhost``: for the addresses ComfyUI listens on and a request's peer.

    The forms a socket reports are matched as text first, with no parsing:
    the middleware asks this of every request that may be a trusted local one.
    """
    if not address:
        return False
    if address == "::1" or address.startswith("127.") or address.startswith("::ffff:127."):
        return True
    if address == "localhost":
        return True
    parsed = _parse_address(address)
    return parsed is not None and parsed.is_loopback


class TrustedProxies:
    def __init__(self, networks=()):
        self.networks = tuple(networks)
        self._verdicts: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, peer) -> bool:
        """True when ``peer`` (the socket's address text) is a configured proxy."""
        if not self.networks or not peer:
            return False
        verdict = self._verdicts.get(peer)
        if verdict is None:
            address = _parse_address(peer)
            verdict = address is not None and any(address in network for network in self.networks)
            if len(self._verdicts) < CACHE_MAX:
                self._verdicts[peer] = verdict
        return verdict

    def client_address(self, peer: str, forwarded_for: list) -> str:
        """The client's address: the peer, unless the peer is a trusted proxy;
        then the right-most ``X-Forwarded-For`` entry that is not a trusted
        proxy (entries left of it were written by the client and prove nothing).
        ``forwarded_for`` holds the header's values in the order received."""
        if not self.trusts(peer):
            return peer
        client = peer
        for entry in reversed(",".join(forwarded_for).split(",")):
            address = _parse_address(entry)
            if address is None:
                break  # garbage: the hop that received it is the last one we know
            client = str(address)
            if not any(address in network for network in self.networks):
                break
        return client

    def forwarded_https(self, peer: str, forwarded_proto: list) -> bool:
        """True when a trusted proxy says the client spoke HTTPS to it (the last
        ``X-Forwarded-Proto`` value: the one the nearest proxy wrote)."""
        if not forwarded_proto or not self.trusts(peer):
            return False
        return ",".join(forwarded_proto).rsplit(",", 1)[-1].strip().lower() == "https"
