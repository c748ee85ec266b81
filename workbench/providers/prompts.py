"""Few-shot prompt templates for base models and chat messages for hosted models.

A template is text with three placeholders: `{labels}` (the label set, comma-separated),
`{examples}` (the few-shot block) and `{input}` (the item). The *query block* is the text from
the start of the line holding `{input}` to the end, e.g. `Message: {input}\\nCategory:`; every
few-shot example is that block with its input filled in, followed by ` <answer>` and a blank
line, so examples and the real query always look alike to a base model.

`render` splits the prompt into `(prefix, item)`: the prefix (instructions + examples + the
query block up to `{input}`) is identical for every item of a run, which lets the local provider
evaluate it once and reuse its KV cache.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workbench.errors import WorkbenchError

BUILTIN_TASKS: tuple[str, ...] = ("classification", "extraction", "qa")

# Other spellings of the built-in task types (workload task types, CLI shorthands).
TASK_ALIASES: dict[str, str] = {
    "classify": "classification", "intent": "classification", "triage": "classification",
    "support-triage": "classification", "label": "classification",
    "extract": "extraction", "field-extraction": "extraction", "json": "extraction",
    "arithmetic": "qa", "arithmetic-qa": "qa", "math": "qa", "numeric": "qa",
}

DEFAULT_TEMPLATES: dict[str, str] = {
    "classification": (
        "Each customer message is labelled with exactly one category from: {labels}.\n\n"
        "{examples}Message: {input}\nCategory:"
    ),
    "extraction": (
        "Extract the order from each text as one line of JSON with the keys customer, amount, "
        "currency, date (YYYY-MM-DD) and items (a list of strings).\n\n"
        "{examples}Text: {input}\nJSON:"
    ),
    "qa": (
        "Solve each arithmetic word problem. The answer is a single number.\n\n"
        "{examples}Question: {input}\nAnswer:"
    ),
    # Any other task type: plain input -> output pairs from the config's few-shot examples.
    "generic": "{examples}Input: {input}\nOutput:",
}

DEFAULT_FEW_SHOT: dict[str, list[tuple[str, str]]] = {
    "classification": [
        ("I was charged twice for my subscription this month.", "billing"),
        ("My package still hasn't arrived and tracking hasn't updated in a week.", "shipping"),
        ("The app crashes every time I open the settings page.", "technical"),
        ("How do I change the email address on my account?", "account"),
        ("I returned the jacket two weeks ago, when will I get my money back?", "refund"),
        ("Do you have any stores in Lisbon?", "other"),
        ("Why does my invoice show a fee I never agreed to?", "billing"),
        ("The courier left my parcel at the wrong address.", "shipping"),
        ("I can't log in, it says my password is wrong even after resetting it.", "account"),
        ("The item arrived broken, I want a refund please.", "refund"),
        ("Error 500 when I try to upload a file.", "technical"),
        ("Can I leave feedback about one of your staff?", "other"),
        ("Please cancel my subscription at the end of this month.", "cancellation"),
        ("I no longer need the order I placed this morning, can you stop it?", "cancellation"),
    ],
    "extraction": [
        (
            "Invoice from Maria Lopez on 2024-03-05: 2 desk lamps and a box of bulbs, "
            "total 84.50 EUR.",
            json.dumps({"customer": "Maria Lopez", "amount": 84.5, "currency": "EUR",
                        "date": "2024-03-05", "items": ["desk lamp", "bulbs"]}),
        ),
        (
            "Order placed 12 Jan 2024 by John Carter for a keyboard and a mouse; "
            "he paid $129.99.",
            json.dumps({"customer": "John Carter", "amount": 129.99, "currency": "USD",
                        "date": "2024-01-12", "items": ["keyboard", "mouse"]}),
        ),
        (
            "Aiko Tanaka bought one travel mug for 1200 JPY on 2023-11-20.",
            json.dumps({"customer": "Aiko Tanaka", "amount": 1200, "currency": "JPY",
                        "date": "2023-11-20", "items": ["travel mug"]}),
        ),
    ],
    "qa": [
        ("Tom has 3 boxes with 4 apples in each box. How many apples does he have?", "12"),
        ("A shirt costs 20 dollars and is on sale for 25% off. What is the sale price?", "15"),
        ("Sara read 12 pages on Monday and twice as many on Tuesday. "
         "How many pages did she read in total?", "36"),
        ("A train travels 60 km per hour for 2.5 hours. How far does it go?", "150"),
    ],
    "generic": [],
}

# Generation stops at the end of the answer line: base models otherwise invent the next example.
STOP_SEQUENCES: tuple[str, ...] = ("\n\n", "\nMessage:", "\nText:", "\nQuestion:", "\nInput:")

CHAT_INSTRUCTIONS: dict[str, str] = {
    "classification": (
        "You label customer messages. Reply with exactly one category from this list and "
        "nothing else: {labels}."
    ),
    "extraction": (
        "Extract the order from the text. Reply with only one JSON object with the keys "
        "customer, amount (a number), currency (ISO code), date (YYYY-MM-DD) and items "
        "(a list of strings)."
    ),
    "qa": (
        "Solve the arithmetic word problem. Reply with only the final answer as a single "
        "number, without units or working."
    ),
    "generic": "Answer the input concisely.",
}


@dataclass(frozen=True)
class Rendered:
    """A prompt split into the run-wide `prefix` and the per-item `item` text."""

    prefix: str
    item: str
    stop: tuple[str, ...] = STOP_SEQUENCES

    @property
    def text(self) -> str:
        """The whole prompt."""
        return self.prefix + self.item


def canonical_task(task_type: str, labels: Sequence[str] | None = None) -> str:
    """The built-in task a task type maps to; any labelled task is classification."""
    t = (task_type or "").strip().lower()
    t = TASK_ALIASES.get(t, t)
    if t in BUILTIN_TASKS:
        return t
    return "classification" if labels else "generic"


def validate_template(template: str, where: str = "template") -> str:
    """Return `template` if it has exactly one `{input}`; otherwise a clear WorkbenchError."""
    count = template.count("{input}")
    if count != 1:
        raise WorkbenchError(
            f"{where}: a prompt template must contain the placeholder {{input}} exactly once "
            f"(found {count}); optional placeholders: {{labels}}, {{examples}}"
        )
    return template


def _query_block(template: str) -> tuple[str, str, str]:
    """Split a template at the start of the `{input}` line: (header, query_before, query_after)."""
    validate_template(template)
    head, tail = template.split("{input}")
    line_start = head.rfind("\n") + 1
    ex = head.rfind("{examples}")
    if ex >= 0:
        line_start = max(line_start, ex + len("{examples}"))
    return head[:line_start], head[line_start:], tail


def _format_examples(
    query_before: str, query_after: str, examples: Sequence[tuple[str, str]]
) -> str:
    return "".join(f"{query_before}{inp}{query_after} {ans}\n\n" for inp, ans in examples)


def examples_for(
    task: str, labels: Sequence[str] | None, few_shot: Mapping[str, Sequence[tuple[str, str]]],
    task_type: str, examples: Sequence[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """The few-shot examples: the request's own (`examples`, chosen from a workload by
    workbench.fewshot; empty means zero-shot), else the config's for this task type, else the
    defaults; for label tasks only examples whose answer is one of the labels (others would
    teach wrong labels)."""
    if examples is not None:
        chosen: Sequence[tuple[str, str]] = examples
    else:
        chosen = few_shot.get(task_type) or few_shot.get(task) or DEFAULT_FEW_SHOT.get(task, [])
    pairs = [(str(a), str(b)) for a, b in chosen]
    if labels:
        allowed = set(labels)
        pairs = [p for p in pairs if p[1] in allowed]
    return pairs


def _single_line(text: str) -> str:
    # Inputs go on one line so the "Category:" cue stays where the examples put it.
    return re.sub(r"\s*\n\s*", " ", text.strip())


def as_messages(messages: Sequence[Mapping] | str | None) -> list[dict] | None:
    """Chat messages from a list of dicts or their JSON text (as stored); None when absent."""
    if messages is None:
        return None
    if isinstance(messages, str):
        if not messages.strip():
            return None
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise WorkbenchError("chat messages are not valid JSON") from None
    if not isinstance(messages, Sequence) or not all(isinstance(m, Mapping) for m in messages):
        raise WorkbenchError("chat messages must be a list of {role, content} objects")
    return [dict(m) for m in messages] or None


def request_text(input_text: str, messages: Sequence[Mapping] | str | None) -> str:
    """Plain text of a request: the input, or the user turns of chat messages."""
    if input_text and input_text.strip():
        return input_text
    messages = as_messages(messages)
    if messages:
        parts = [str(m.get("content", "")) for m in messages if m.get("role") != "system"]
        return "\n".join(p for p in parts if p)
    return input_text or ""


def render(
    task_type: str,
    input_text: str,
    labels: Sequence[str] | None = None,
    templates: Mapping[str, str] | None = None,
    few_shot: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    messages: Sequence[Mapping] | str | None = None,
    examples: Sequence[tuple[str, str]] | None = None,
) -> Rendered:
    """Render a base-model few-shot prompt as (prefix shared by the run, item text);
    `examples` (the request's own few-shot pairs) replace the config's when given."""
    task = canonical_task(task_type, labels)
    templates = templates or {}
    template = templates.get(task_type) or templates.get(task) or DEFAULT_TEMPLATES[task]
    header, before, after = _query_block(template)
    examples = examples_for(task, labels, few_shot or {}, task_type, examples)
    label_text = ", ".join(labels) if labels else ""
    header = header.replace("{labels}", label_text)
    ex_block = _format_examples(before.replace("{labels}", label_text),
                                after.replace("{labels}", label_text), examples)
    header = header.replace("{examples}", ex_block) if "{examples}" in header else header + ex_block
    prefix = header + before.replace("{labels}", label_text)
    item = _single_line(request_text(input_text, messages)) + after.replace("{labels}", label_text)
    return Rendered(prefix=prefix, item=item)


def render_messages(
    task_type: str,
    input_text: str,
    labels: Sequence[str] | None = None,
    few_shot: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    messages: Sequence[Mapping] | str | None = None,
    examples: Sequence[tuple[str, str]] | None = None,
) -> list[dict]:
    """Chat messages for a hosted model: a system instruction, few-shot turns (the request's
    own `examples` when given, else the config's), then the item. A request that already
    carries chat messages is sent with the instruction prepended only when it has no system
    turn of its own."""
    task = canonical_task(task_type, labels)
    system = CHAT_INSTRUCTIONS[task].replace("{labels}", ", ".join(labels or ()))
    messages = as_messages(messages)
    if messages:
        msgs = [dict(m) for m in messages]
        if not any(m.get("role") == "system" for m in msgs) and task != "generic":
            msgs.insert(0, {"role": "system", "content": system})
        return msgs
    out: list[dict] = [{"role": "system", "content": system}]
    for inp, ans in examples_for(task, labels, few_shot or {}, task_type, examples):
        out.append({"role": "user", "content": inp})
        out.append({"role": "assistant", "content": ans})
    out.append({"role": "user", "content": input_text})
    return out


def parse_label(text: str | None, labels: Sequence[str]) -> tuple[str | None, bool]:
    """The label a free-text answer names: exact (case-insensitive) match, else the label
    mentioned first, else the closest by string similarity. Returns (label, exact)."""
    if not labels:
        return None, False
    if not text or not text.strip():
        return None, False
    cleaned = text.strip().strip("`'\".").strip()
    first_line = cleaned.splitlines()[0].strip() if cleaned else ""
    lower = {lab.lower(): lab for lab in labels}
    for candidate in (cleaned.lower(), first_line.lower(),
                      first_line.lower().removeprefix("category:").strip()):
        if candidate in lower:
            return lower[candidate], True
    # A label mentioned as a word: the earliest mention wins (ties: the longest label).
    hits = []
    low = cleaned.lower()
    for lab in labels:
        m = re.search(rf"(?<![\w-]){re.escape(lab.lower())}(?![\w-])", low)
        if m:
            hits.append((m.start(), -len(lab), lab))
    if hits:
        return min(hits)[2], False
    close = difflib.get_close_matches(first_line.lower(), list(lower), n=1, cutoff=0.0)
    return (lower[close[0]] if close else labels[0]), False
