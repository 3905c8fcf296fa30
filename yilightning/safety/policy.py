"""The safety policy: per risk category an action and a threshold, loaded from YAML.

Actions, least to most severe: ``allow`` (ignore), ``label`` (report the category, pass the
text), ``rewrite`` (redact the offending part), ``block`` (refuse the input / stop the output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from yilightning.safety.taxonomy import CATEGORY_NAMES

ACTIONS = ("allow", "label", "rewrite", "block")
SEVERITY = {a: i for i, a in enumerate(ACTIONS)}


@dataclass(frozen=True)
class CategoryRule:
    action: str = "block"
    threshold: float = 0.5  # category probability at or above which the category is flagged


@dataclass
class Policy:
    categories: dict[str, CategoryRule] = field(default_factory=dict)
    unsafe_threshold: float | str = "auto"  # "unsafe" probability that flags a text; "auto" = the classifier's calibrated one
    jailbreak_factor: float = 0.8  # thresholds are multiplied by this when a jailbreak pattern is present
    pii_action: str = "rewrite"  # what to do with PII: allow, label or rewrite (mask)
    injection_action: str = "rewrite"  # what to do with injection segments: allow, label, rewrite (neutralise), block
    max_turns: int = 4  # user turns of a conversation checked together (multi-turn attacks)
    stream_lookback: int = 512  # characters of already-streamed text re-checked with each chunk
    stream_holdback: int = 64  # characters held back so PII split across chunks can still be masked

    def __post_init__(self) -> None:
        unknown = set(self.categories) - set(CATEGORY_NAMES)
        if unknown:
            raise ValueError(f"policy: unknown categories {sorted(unknown)}; valid: {', '.join(CATEGORY_NAMES)}")
        for name in CATEGORY_NAMES:
            self.categories.setdefault(name, CategoryRule())
        for name, rule in self.categories.items():
            _check_action(f"categories.{name}.action", rule.action, ACTIONS)
            self.categories[name] = CategoryRule(rule.action, _prob(f"categories.{name}.threshold", rule.threshold))
        _check_action("pii_action", self.pii_action, ("allow", "label", "rewrite"))
        _check_action("injection_action", self.injection_action, ACTIONS)
        if self.unsafe_threshold != "auto":
            self.unsafe_threshold = _prob("unsafe_threshold", self.unsafe_threshold)
        self.jailbreak_factor = _prob("jailbreak_factor", self.jailbreak_factor)
        for name, low in (("max_turns", 1), ("stream_lookback", 1), ("stream_holdback", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"policy: {name} must be an integer >= {low}, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "Policy":
        data = dict(data or {})
        cats = data.pop("categories", {}) or {}
        known = set(cls.__dataclass_fields__) - {"categories"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"policy: unknown keys {sorted(unknown)}; valid: categories, {', '.join(sorted(known))}")
        rules = {}
        for name, rule in cats.items():
            if isinstance(rule, str):
                rule = {"action": rule}
            if not isinstance(rule, dict) or set(rule) - {"action", "threshold"}:
                raise ValueError(f"policy: categories.{name} must be an action or a mapping with action/threshold, got {rule!r}")
            rules[name] = CategoryRule(**rule)
        return cls(categories=rules, **data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Policy":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()))

    @classmethod
    def default(cls) -> "Policy":
        """The packaged ``default_policy.yaml``."""
        return cls.from_dict(yaml.safe_load(resources.files("yilightning.safety").joinpath("default_policy.yaml").read_text()))


def _check_action(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"policy: {name} must be one of {', '.join(allowed)}, got {value!r}")


def _prob(name: str, value: object) -> float:
    """``value`` as a float in [0, 1] (a quoted number in the YAML is accepted), else a clear error."""
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        p = float("nan")
    if isinstance(value, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"policy: {name} must be a number in [0, 1], got {value!r}")
    return p
