"""Governance detectors: vectorized masks equal the per-text versions; checksums work."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from workbench import governance as gov

CASES = {
    "email": (["write to jane.roe@example.org", "a.b+c@mail.co.uk ok"],
              ["no at sign here", "user@localhost"]),
    "phone": (["call +44 20 7946 0958", "(555) 123-4567", "ring 555-123-4567 now"],
              ["date 2023-01-15", "order 12345"]),
    "payment_card": (["card 4111 1111 1111 1111", "5500-0000-0000-0004 thanks"],
                     ["card 4111 1111 1111 1112", "id 1234567890123"]),
    "iban": (["IBAN GB82 WEST 1234 5698 7654 32", "pay DE89370400440532013000 now"],
             ["IBAN GB82 WEST 1234 5698 7654 33", "GB00 nothing"]),
    "national_id": (["ssn 123-45-6789", "NINO AB 12 34 56 C"],
                    ["ssn 666-45-6789", "ssn 123-00-6789", "part 123-45-67890"]),
}


@pytest.mark.parametrize("detector", sorted(CASES))
def test_detectors_find_positives_and_skip_negatives(detector: str):
    positives, negatives = CASES[detector]
    texts = pl.Series(positives + negatives + [None])
    mask = gov.detect(texts, detector)
    assert mask.tolist() == [True] * len(positives) + [False] * (len(negatives) + 1)
    assert [gov.detect_one(t or "", detector) for t in texts.to_list()] == mask.tolist()


def test_luhn_and_iban_checksums_vectorized_equal_per_item():
    rng = np.random.default_rng(0)
    digits = ["".join(map(str, rng.integers(0, 10, int(rng.integers(13, 20)))))
              for _ in range(500)] + ["4111111111111111", "79927398713"]
    got = gov.luhn_valid(pl.Series(digits))
    assert got.tolist() == [gov._luhn_one(d) for d in digits]
    assert got[-2] and got[-1]
    ibans = ["GB82WEST12345698765432", "DE89370400440532013000", "GB82WEST12345698765433",
             "FR1420041010050500013M02606", "NL91ABNA0417164300"]
    assert gov.iban_valid(pl.Series(ibans)).tolist() == [gov._iban_one(i) for i in ibans] == [
        True, True, False, True, True]


def test_item_tags_match_values_not_keys():
    items = pl.DataFrame({
        "data_class": ["pii", None, None, None, None],
        "difficulty": [None, "hard", None, None, None],
        "tags": [None, '["a", "pii"]', '{"task": "math", "pii": true}',
                 '{"pii": false, "x": "pii-ish"}', "not json"],
    })
    assert gov.tag_mask(items, "pii").tolist() == [True, True, True, False, False]
    assert gov.tag_mask(items, "task=math").tolist() == [False, False, True, False, False]
    assert gov.tag_mask(items, "hard").tolist() == [False, True, False, False, False]
    for tag in ("pii", "task=math", "math", "hard"):
        expected = [gov.has_tag_one(*row, tag) for row in items.iter_rows()]
        assert gov.tag_mask(items, tag).tolist() == expected
