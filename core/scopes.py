"""What a key may do: its scopes, and the level each one grants.

Scopes are nested: ``admin`` can do all that ``generate`` can, which can do
all that ``read`` can. A key's level is the highest of its scopes; a route's
class (see ``route_table``) is the level it needs. The request path compares
two small integers, worked out once per key and once per route.
"""

PUBLIC = "public"
READ = "read"
GENERATE = "generate"
ADMIN = "admin"

# Scopes a key may carry, least privilege first, with what each allows (the
# panel, the CLI's help and the OpenAPI description say the same).
KNOWN_SCOPES = (READ, GENERATE, ADMIN)
SCOPE_SUMMARIES = {
    READ: "see the node and model catalog, its own usage and jobs; no workflows, no uploads",
    GENERATE: "read, plus queue workflows, upload inputs and fetch results",
    ADMIN: "everything: keys, users, ComfyUI-Manager, the server's logs and settings",
}
DEFAULT_SCOPES = (GENERATE,)  # a new key runs workflows, nothing more

LEVELS = {PUBLIC: 0, READ: 1, GENERATE: 2, ADMIN: 3}
ADMIN_LEVEL = LEVELS[ADMIN]
NO_LEVEL = 0  # anonymous, or a key whose scopes name nothing known


def level_of(scopes) -> int:
    """The level a set of scopes grants: its highest scope's."""
    return max((LEVELS.get(scope, NO_LEVEL) for scope in scopes), default=NO_LEVEL)


def scope_for_level(level: int) -> str:
    """The scope a level needs (for a refusal's ``required_scope``)."""
    for name, value in LEVELS.items():
        if value == level:
            return name
    raise ValueError(level)
