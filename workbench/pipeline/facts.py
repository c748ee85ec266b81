"""Facts about one item read from its text and tags, for the per-item specification.

The live router builds these from a request; the per-item oracle from a workload's rows.
Detection uses the governance module's per-text functions (the same patterns replay applies
vectorized, tested to agree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from workbench import governance as gov
from workbench.policy import Policy


@dataclass(frozen=True)
class TextFacts:
    """ItemFacts of one input text with its item tags (data_class, difficulty, tags JSON) and,
    for policies with a learned router, predicted success and mean cost per model."""

    policy: Policy
    text: str
    data_class: str | None = None
    difficulty: str | None = None
    tags_json: str | None = None
    predictions: Mapping[str, float] | None = None
    mean_costs: Mapping[str, float] | None = None
    _hits: dict[int, bool] = field(default_factory=dict, repr=False, compare=False)

    @property
    def chars(self) -> int:
        """Characters of the input."""
        return len(self.text)

    def rule_hit(self, rule_index: int) -> bool:
        """Whether governance rule `rule_index` hits: a detector, a pattern or an item tag."""
        hit = self._hits.get(rule_index)
        if hit is None:
            rule = self.policy.governance.rules[rule_index]
            hit = (any(gov.detect_one(self.text, d) for d in rule.detectors)
                   or any(self.pattern(p) for p in rule.patterns)
                   or any(self.tag(t) for t in rule.item_tags))
            self._hits[rule_index] = hit
        return hit

    def pattern(self, pattern: str) -> bool:
        """Whether `pattern` matches the input (Python `re`; policies are checked to compile
        the same way in the replay engine)."""
        return re.search(pattern, self.text) is not None

    def tag(self, tag: str) -> bool:
        """Whether the item carries `tag`."""
        return gov.has_tag_one(self.data_class, self.difficulty, self.tags_json, tag)

    def keyword(self, word: str) -> bool:
        """Whether the input contains `word`, case-insensitively."""
        return word.lower() in self.text.lower()

    def predicted(self, model: str) -> float | None:
        """The learned router's predicted success of `model`, when given."""
        return None if self.predictions is None else self.predictions.get(model)

    def mean_cost(self, model: str) -> float | None:
        """The learned router's mean cost of `model`, when given."""
        return None if self.mean_costs is None else self.mean_costs.get(model)


__all__ = ["TextFacts"]
