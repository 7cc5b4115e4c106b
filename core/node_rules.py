"""Which node classes a key may run: the operator's allow or deny list per scope.

A ``generate`` key can queue any installed node, custom nodes that read files,
fetch URLs or run code included. The operator may narrow that per scope:

    {"generate": {"deny": ["LoadImageFromUrl"]}, "admin": {"allow": [...]}}

A scope's rule is either an allow list (only these classes) or a deny list
(every class but these), never both. Rules do not inherit: a scope's rule
applies to principals whose highest scope it is (a ``generate`` rule does not
bind an admin key). Admin sessions and the local admin follow the ``admin``
rule when there is one. Anonymous callers (enable mode) get no rule: ComfyUI
works as before for them.

Worked out once when the settings load, as frozensets indexed by level; the
request path only looks a level up, and only on ``POST /prompt``.
"""

import json
from dataclasses import dataclass

from .scopes import KNOWN_SCOPES, LEVELS

ALLOW = "allow"
DENY = "deny"
CLASS_NAME_MAX = 200  # longer than any node class name; a longer entry is a mistake


@dataclass(frozen=True)
class NodeRule:
    """One scope's rule: ``allow`` (only these; None = no allow list) or ``deny``."""

    scope: str
    allow: frozenset | None = None
    deny: frozenset = frozenset()

    def refuses(self, class_type: str) -> bool:
        if self.allow is not None:
            return class_type not in self.allow
        return class_type in self.deny

    def describe(self) -> dict:
        if self.allow is not None:
            return {ALLOW: sorted(self.allow)}
        return {DENY: sorted(self.deny)}


@dataclass(frozen=True)
class NodeRules:
    """Every scope's rule; ``by_level[principal.level]`` is the rule that binds a principal (or None)."""

    by_level: tuple = (None,) * (max(LEVELS.values()) + 1)

    @property
    def any(self) -> bool:
        return any(rule is not None for rule in self.by_level)

    def describe(self) -> dict:
        """The rules as the setting spells them (scope -> {"allow"|"deny": [names]})."""
        return {rule.scope: rule.describe() for rule in self.by_level if rule is not None}


NO_RULES = NodeRules()


def _class_names(scope: str, which: str, value) -> frozenset:
    if not isinstance(value, list):
        raise ValueError(f"'{scope}.{which}' must be a list of node class names")
    for name in value:
        if not isinstance(name, str) or not name.strip() or len(name) > CLASS_NAME_MAX:
            raise ValueError(f"'{scope}.{which}' must hold node class names (non-empty text of at most "
                             f"{CLASS_NAME_MAX} characters); got {json.dumps(name)[:60]}")
    return frozenset(value)


def _rule(scope: str, value) -> NodeRule:
    if not isinstance(value, dict):
        raise ValueError(f"the rule of scope '{scope}' must be an object with 'allow' or 'deny'")
    unknown = sorted(set(value) - {ALLOW, DENY})
    if unknown:
        raise ValueError(f"the rule of scope '{scope}' has an unknown field '{unknown[0]}' (expected allow or deny)")
    if ALLOW in value and DENY in value:
        raise ValueError(f"the rule of scope '{scope}' has both allow and deny; give one")
    if ALLOW in value:
        return NodeRule(scope, allow=_class_names(scope, ALLOW, value[ALLOW]))
    if DENY in value:
        return NodeRule(scope, deny=_class_names(scope, DENY, value[DENY]))
    raise ValueError(f"the rule of scope '{scope}' needs 'allow' or 'deny'")


class _Repeated(ValueError):
    pass


def _no_repeats(pairs):
    seen = {}
    for name, value in pairs:
        if name in seen:
            raise _Repeated(f"'{name}' appears twice")
        seen[name] = value
    return seen


def parse_node_rules(raw) -> NodeRules:
    """The setting's value (a JSON text from the environment, or the object in
    config.json) -> NodeRules; ValueError says what is wrong."""
    if isinstance(raw, str):
        if not raw.strip():
            return NO_RULES
        try:
            raw = json.loads(raw, object_pairs_hook=_no_repeats)
        except ValueError as error:
            if isinstance(error, _Repeated):
                raise ValueError(str(error)) from None
            raise ValueError('expected a JSON object such as {"generate": {"deny": ["LoadImageFromUrl"]}}') from None
    if not isinstance(raw, dict):
        raise ValueError('expected a JSON object of scope -> {"allow": [...]} or {"deny": [...]}')
    by_level = list(NO_RULES.by_level)
    for scope, value in raw.items():
        if scope not in KNOWN_SCOPES:
            raise ValueError(f"unknown scope '{scope}'; known: {', '.join(KNOWN_SCOPES)}")
        by_level[LEVELS[scope]] = _rule(scope, value)
    return NodeRules(tuple(by_level))


def refused_node(rule: NodeRule, prompt):
    """The first (node id, class_type) of a prompt that ``rule`` refuses, or None.
    Entries ComfyUI itself would reject (not an object, no class_type) are left
    to it."""
    if not isinstance(prompt, dict):
        return None
    for node_id, node in prompt.items():
        if isinstance(node, dict):
            class_type = node.get("class_type")
            if isinstance(class_type, str) and rule.refuses(class_type):
                return node_id, class_type
    return None
