"""Train the fraud topology's model and export it as ONNX: topologies/models/fraud.onnx.

    pip install -e '.[train]'            # scikit-learn and skl2onnx (not needed to run the model)
    python scripts/train_fraud_model.py  # writes the file, prints the held-out AUC

The data is the fraud generator's (``stream-orch generate fraud``; :func:`generate_fraud` with a
fixed seed), its ground truth the pattern each transaction was made with: ``burst`` and
``large_amount`` are fraud, ``normal`` and ``foreign_country`` (a customer abroad) are not. The
features are those the topology computes before its ``model`` step, worked out here by the
topology's Python twin (``benchmarks/fraud_logic.py``: harmonise, velocity over 60 s per
account, amount in EUR) with the same expressions as the step's ``inputs``:

    amount_ratio  amount_eur / max(avg_amount, 1.0)
    velocity_60s  the account's transactions in (ts - 60 s, ts]
    foreign       1 if country != home_country else 0
    online        1 if channel == 'online' else 0

The model is a logistic regression (scikit-learn, lbfgs, deterministic); the transactions are
split by time, the first 70 % to train and the last 30 % held out. The ONNX file has one float
input ``features`` [N, 4], outputs ``label`` and ``probabilities`` [N, 2] (no ZipMap), and the
metadata ``feature_names`` that ``stream-orch validate`` checks the step's inputs against.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ (the topology's Python twin) is not an installed package

from benchmarks import fraud_logic as fl  # noqa: E402
from stream_orch.tools.generate import generate_fraud  # noqa: E402

FEATURES = ["amount_ratio", "velocity_60s", "foreign", "online"]
FRAUD = {"burst", "large_amount"}
OUT = REPO / "topologies" / "models" / "fraud.onnx"


def dataset(customers: int, transactions: int, seed: int) -> tuple[list[list[float]], list[int]]:
    """(features, labels) of the valid, first-seen transactions, in event-time order."""
    labels: dict[str, str] = {}
    records, _ = generate_fraud(customers, transactions, seed=seed, start_ms=1_767_225_600_000, labels=labels)
    profiles: dict[str, dict] = {}
    for r in records:
        if r.topic == "customers":
            profile = fl.harmonise_customer(orjson.loads(r.value))
            profiles[profile["customer_id"]] = profile
    windows: dict[str, list[int]] = {}
    seen: set[str] = set()
    x: list[list[float]] = []
    y: list[int] = []
    for r in records:
        if r.topic != "transactions":
            continue
        try:
            txn = fl.harmonise(orjson.loads(r.value))
        except (fl.Invalid, orjson.JSONDecodeError):
            continue
        if txn["txn_id"] in seen or txn["txn_id"] not in labels:
            continue
        seen.add(txn["txn_id"])
        profile = profiles[txn["customer_id"]]
        windows[txn["account_id"]], velocity = fl.velocity(windows.get(txn["account_id"], []), txn["ts"])
        amount_eur = txn["amount"] * fl.RATES[txn["currency"]]
        x.append(
            [
                amount_eur / max(float(profile["avg_amount"]), 1.0),
                float(velocity),
                1.0 if txn["country"] != profile["home_country"] else 0.0,
                1.0 if txn["channel"] == "online" else 0.0,
            ]
        )
        y.append(1 if labels[txn["txn_id"]] in FRAUD else 0)
    return x, y


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    try:
        import numpy as np
        import onnx
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
    except ImportError as exc:
        print(f"train_fraud_model: {exc.name} is missing: pip install -e '.[train]'", file=sys.stderr)
        return 2

    x, y = dataset(args.customers, args.transactions, args.seed)
    features, truth = np.array(x, dtype=np.float32), np.array(y)
    cut = int(len(truth) * 0.7)
    model = LogisticRegression(max_iter=1000)
    model.fit(features[:cut], truth[:cut])
    held_out = model.predict_proba(features[cut:])[:, 1]
    auc = roc_auc_score(truth[cut:], held_out)
    # the rules' share of the same signal, for comparison: amount over 5x the average, velocity over 5
    rules = 0.4 * (features[cut:, 0] > 5) + 0.3 * (features[cut:, 1] > 5) + 0.2 * features[cut:, 2]
    rules_auc = roc_auc_score(truth[cut:], rules)

    onx = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURES)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.model_version = 1
    onx.doc_string = "Fraud probability of a card transaction (scripts/train_fraud_model.py)."
    onnx.helper.set_model_props(onx, {"feature_names": ",".join(FEATURES)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(onx.SerializeToString())

    coefficients = ", ".join(f"{n} {c:+.3f}" for n, c in zip(FEATURES, model.coef_[0], strict=True))
    print(f"data: {len(truth)} transactions (seed {args.seed}), {int(truth.sum())} fraud; "
          f"trained on {cut}, held out {len(truth) - cut}")
    print(f"model: logistic regression, intercept {model.intercept_[0]:+.3f}, {coefficients}")
    print(f"held-out AUC: {auc:.4f} (the rules' score alone: {rules_auc:.4f})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
