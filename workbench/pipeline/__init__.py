"""One policy core: what a policy does to an item, written once.

- `spec`: the per-item specification (plain Python; the rules' only statement in words).
- `kernel`: the same rules vectorized over column arrays (replay and the tuner).
- `facts`: per-item facts read from a request's text and tags (the live router, the oracle).
- `oracle`: the specification run item by item over recorded outcomes.

Replay, the tuner and the live router call these and never restate a rule; a conformance test
holds the kernel, the specification and the live router to each other on random policies.
"""

from workbench.pipeline.spec import REFUSAL_REASONS

__all__ = ["REFUSAL_REASONS"]
