"""Straightforward per-item reference replay (a Python loop over items and tiers).

It states the decision rules of `workbench.replay` one item at a time, with Python `re` and
plain-Python checksums, and exists to check the vectorized replay (tests) and to time it
against (benchmark). Learned-router predictions are taken as given, not re-fitted.
"""

from __future__ import annotations

import math
import re
from typing import Any

import polars as pl

from workbench import governance as gov
from workbench.policy import LearnedPreroute, Policy, RulesPreroute
from workbench.verifiers import verify_one


def _score(policy: Policy, pre: RulesPreroute, item: dict[str, Any]) -> float:
    text = item.get("input") or ""
    score = pre.base_score
    if pre.long_input_chars is not None:
        score = score - (pre.length_penalty if len(text) > pre.long_input_chars else 0.0)
    for tag, delta in pre.tag_scores.items():
        hit = gov.has_tag_one(item.get("data_class"), item.get("difficulty"), item.get("tags"), tag)
        score = score + (delta if hit else 0.0)
    for word, delta in pre.keyword_scores.items():
        score = score + (delta if word.lower() in text.lower() else 0.0)
    return min(max(score, 0.0), 1.0)


def _detected(rule: Any, item: dict[str, Any]) -> bool:
    text = item.get("input") or ""
    if any(gov.detect_one(text, d) for d in rule.detectors):
        return True
    if any(re.search(p, text) for p in rule.patterns):
        return True
    return any(
        gov.has_tag_one(item.get("data_class"), item.get("difficulty"), item.get("tags"), t)
        for t in rule.item_tags
    )


def _run(tiers: list[int], policy: Policy, o: list[dict[str, Any] | None],
         ok: list[bool], fb: dict[str, Any] | None) -> dict[str, Any]:
    """Cascade over the allowed tier indexes `tiers` (in order) for one item."""
    cap = policy.budgets.max_cost_per_request
    spent = 0.0
    affordable = []
    for t in tiers:
        if cap is not None and spent + o[t]["cost"] > cap:  # type: ignore[index]
            break
        spent += o[t]["cost"]  # type: ignore[index]
        affordable.append(t)
    if not affordable:
        return {"budget_refused": True}
    tried: list[int] = []
    spent = 0.0
    for pos, t in enumerate(affordable):
        rec = o[t]
        assert rec is not None
        tried.append(t)
        spent += rec["cost"]
        if rec["error"]:
            if fb is not None and (cap is None or spent + fb["cost"] <= cap):
                return {"tried": tried, "answer": t, "fallback": True}
        elif ok[t]:
            return {"tried": tried, "answer": t, "fallback": False}
        if pos == len(affordable) - 1:
            return {"tried": tried, "answer": t, "fallback": False}
    raise AssertionError("unreachable")


def reference_replay(
    policy: Policy,
    items: pl.DataFrame,
    outcomes: pl.DataFrame,
    predictions: dict[str, dict[str, float]] | None = None,
    mean_cost: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per-item decisions: item_id, models_tried (list), answered_by, refusal_reason,
    governance_block, quality (None = unscored), cost_usd, latency_ms (None when unrecorded)."""
    tier_models = list(policy.tier_models)
    k = len(tier_models)
    rec: dict[tuple[str, str], dict[str, Any]] = {}
    for row in outcomes.iter_rows(named=True):
        q = row.get("quality")
        lat = row.get("latency_ms")
        rec[(str(row["item_id"]), row["model"])] = {
            "quality": None if q is None or (isinstance(q, float) and math.isnan(q)) else q,
            "cost": row.get("cost_usd") or 0.0,
            "latency": None if lat is None or (isinstance(lat, float) and math.isnan(lat))
            else lat,
            "error": row.get("error") is not None,
            "confidence": row.get("confidence"),
            "output": row.get("output"),
        }
    results: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for item in items.iter_rows(named=True):
        iid = str(item["item_id"])
        text = item.get("input") or ""
        classes = [r for r in policy.governance.rules if _detected(r, item)]
        allowed_models = set(policy.models)
        for r in classes:
            allowed_models &= policy.allowed_for(r)
        res: dict[str, Any] = {
            "item_id": iid,
            "governance_block": ",".join(r.data_class for r in classes) or None,
            "models_tried": [], "answered_by": None, "refusal_reason": None,
            "quality": 0.0, "cost_usd": 0.0, "latency_ms": 0.0,
        }
        results.append(res)
        tier_ok_gov = [m in allowed_models for m in tier_models]
        if not any(tier_ok_gov):
            res["refusal_reason"] = "governance"
            continue
        if any(re.search(p, text) for p in policy.refusal.deny_patterns):
            res["refusal_reason"] = "deny_pattern"
            continue
        mit = policy.refusal.max_input_tokens
        if mit is not None and math.ceil(len(text) / policy.refusal.chars_per_token) > mit:
            res["refusal_reason"] = "max_input_tokens"
            continue
        needed = [m for m in policy.used_models if m in allowed_models]
        for m in needed:
            if (iid, m) not in rec:
                raise KeyError(f"missing outcome {iid} {m}")
        o = [rec.get((iid, m)) for m in tier_models]
        conf: list[float] = []
        ok: list[bool] = []
        for t, tier in enumerate(policy.tiers):
            r_ = o[t]
            if r_ is None:
                conf.append(0.0)
                ok.append(False)
                continue
            labels = item.get("labels")
            ver = verify_one(tier.verifier, r_["output"], labels or tier.labels)
            recorded = r_["confidence"]
            p = predictions[iid][tier.model] if predictions is not None else None
            if tier.confidence == "recorded":
                c = recorded if recorded is not None else math.nan
            elif tier.confidence == "verifier":
                c = 1.0 if ver else 0.0
            elif tier.confidence == "router":
                c = p  # type: ignore[assignment]
            else:
                c = recorded if recorded is not None else (
                    p if p is not None else (1.0 if ver else 0.0))
            conf.append(c)
            ok.append((not r_["error"]) and ver and c >= tier.accept_above)
        start = 0
        prekey = 0.0
        pre = policy.preroute
        if isinstance(pre, RulesPreroute):
            score = _score(policy, pre, item)
            prekey = score
            if score < pre.preroute_below:
                start = k - 1
        elif isinstance(pre, LearnedPreroute):
            assert predictions is not None and mean_cost is not None
            best = -math.inf
            for t, m in enumerate(tier_models):
                if not tier_ok_gov[t]:
                    continue
                v = predictions[iid][m] - pre.cost_weight * mean_cost[m]
                if v > best:
                    best, start = v, t
            prekey = predictions[iid][tier_models[0]]
        order = [t for t in range(k) if tier_ok_gov[t] and t >= start]
        if not order:
            order = [t for t in range(k) if tier_ok_gov[t]]
        fb = None
        if policy.fallback is not None and policy.fallback in allowed_models:
            fb = rec[(iid, policy.fallback)]
        run = _run(order, policy, o, ok, fb)
        state = {"res": res, "o": o, "ok": ok, "fb": fb, "conf": conf, "prekey": prekey,
                 "tier_ok_gov": tier_ok_gov, "run": run}
        pending.append(state)

    share = policy.budgets.max_strong_share
    if k >= 2 and share is not None:
        limit = math.floor(share * len(results) + 1e-9)
        reach = [s for s in pending if k - 1 in s["run"].get("tried", [])]
        if len(reach) > limit:
            def key(s: dict[str, Any]) -> float:
                v = s["conf"][0] if 0 in s["run"]["tried"] else s["prekey"]
                return 0.0 if v is None or math.isnan(v) else v

            index = {id(s): i for i, s in enumerate(pending)}
            ranked = sorted(reach, key=lambda s: (key(s), index[id(s)]))
            for s in ranked[limit:]:
                order = [t for t in range(k - 1) if s["tier_ok_gov"][t]]
                if not order:
                    s["run"] = {"strong_refused": True}
                    continue
                s["run"] = _run(order, policy, s["o"], s["ok"], s["fb"])

    for s in pending:
        res, run, o, fb = s["res"], s["run"], s["o"], s["fb"]
        if run.get("budget_refused"):
            res["refusal_reason"] = "max_cost_per_request"
            continue
        if run.get("strong_refused"):
            res["refusal_reason"] = "max_strong_share"
            continue
        tried = run["tried"]
        res["models_tried"] = [tier_models[t] for t in tried]
        cost = sum(o[t]["cost"] for t in tried)
        lats = [o[t]["latency"] for t in tried]
        ans = o[run["answer"]]
        answered_by: str | None = tier_models[run["answer"]]
        if run["fallback"]:
            res["models_tried"].append(f"fallback:{policy.fallback}")
            cost += fb["cost"]
            lats.append(fb["latency"])
            ans = fb
            answered_by = policy.fallback
        if ans["error"]:
            quality = 0.0
            answered_by = None
        else:
            quality = ans["quality"]
        res.update(
            answered_by=answered_by, quality=quality, cost_usd=cost,
            latency_ms=None if any(v is None for v in lats) else sum(lats),
        )
    return results
