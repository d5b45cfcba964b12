"""Quality bar for the DDPM: train (or load) the profile's model, draw DDPM-1000 samples and
print the in-domain classifier's confident fraction and FID beside the real test digits'.

    python scripts/ddpm_quality.py --profile quick --samples 256 [--set train_steps=1600]
"""
from __future__ import annotations

import argparse
import json


from dipddpm_lib import get_profile
from dipddpm_lib.compute import Timer
from dipddpm_lib.data import load_generation_data
from dipddpm_lib.ddpm import sample, train_ddpm
from dipddpm_lib.metrics import confident_fraction, fid_kid, train_classifier


def parse_overrides(pairs: list[str]) -> dict:
    """``["a=1", "b=(1,2)"]`` → ``{"a": 1, "b": (1, 2)}`` (values read as JSON/Python literals)."""
    import ast
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--schedule", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="profile overrides, field=value")
    args = ap.parse_args()
    p = get_profile(args.profile, **parse_overrides(args.set))
    x_train, y_train = load_generation_data(p, "train")
    x_test, y_test = load_generation_data(p, "test")
    clf = train_classifier(x_train, y_train, x_test, y_test, p.classifier_steps,
                           min_accuracy=p.min_classifier_accuracy)
    with Timer() as t_train:
        model = train_ddpm(x_train, p, args.schedule, seed=args.seed)
    res = sample(model.unet, model.beta_schedule, "ddpm", 1000, args.samples, seed=args.seed,
                 batch_size=p.sample_batch)
    report = {
        "profile": p.name, "beta_schedule": model.beta_schedule,
        "train_seconds_recorded": model.meta["train_seconds"], "load_or_train_s": t_train.seconds,
        "n_params": model.meta["n_params"], "final_loss": model.meta["final_loss"],
        "classifier_test_accuracy": clf.test_accuracy,
        "samples": args.samples, "sample_wall_s": res.compute.wall_s,
        "confident_fraction_ddpm1000": confident_fraction(clf, res.images),
        "confident_fraction_real_test": confident_fraction(clf, x_test),
        "fid_ddpm1000_vs_train": fid_kid(x_train, res.images, clf.net, clf.name)["fid"],
        "fid_real_test_vs_train": fid_kid(x_train, x_test, clf.net, clf.name)["fid"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
