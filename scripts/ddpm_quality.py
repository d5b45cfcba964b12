"""Quality bar for the DDPM: train (or load) the profile's model, draw samples of the full DDPM
chain (1000 steps) and print chapter 01's quality bar on them (precision and recall, Kynkäänniemi et al. 2019, and the
FID ratio, in the in-domain classifier's features) beside a same-size real test subset and the
controls (noise, constant images, blurred digits, one repeated digit), one seed.

    python scripts/ddpm_quality.py --profile quick --samples 256 [--set train_steps=1600]
"""
from __future__ import annotations

import argparse
import json


from dipddpm_lib import get_profile
from dipddpm_lib.experiments import ddpm_baseline as study
from dipddpm_lib.compute import Timer
from dipddpm_lib.data import load_generation_data
from dipddpm_lib.ddpm import sample, train_ddpm
from dipddpm_lib.metrics import train_classifier


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
    n = min(args.samples, len(x_test))  # the real reference and controls are test subsets
    res = sample(model.unet, model.beta_schedule, "ddpm", 1000, n, seed=args.seed,
                 batch_size=p.sample_batch)
    row = {"method": "ddpm_1000", "label": study.Method("ddpm", 1000).label, "sampler": "ddpm",
           "num_steps": 1000, "seed": args.seed, "num_samples": n, **study.score(res.images, x_train, clf),
           "nfe": res.compute.nfe, "flops": res.compute.flops,
           "gflops": res.compute.flops / 1e9, "wall_s": res.compute.wall_s}
    methods = study.summarize([row])
    reference = study.real_reference(x_test, x_train, clf, [args.seed], n)
    controls = study.controls(x_test, x_train, clf, [args.seed], n)
    bar = study.quality_bar(methods, reference, controls)
    keys = ("fid", "kid", "precision", "recall", "confident_fraction", "class_entropy")

    def scores(entry):
        return {k: entry[k]["mean"] for k in keys}

    report = {
        "profile": p.name, "beta_schedule": model.beta_schedule,
        "train_seconds_recorded": model.meta["train_seconds"], "load_or_train_s": t_train.seconds,
        "n_params": model.meta["n_params"], "final_loss": model.meta["final_loss"],
        "classifier_test_accuracy": clf.test_accuracy,
        "samples": n, "sample_wall_s": res.compute.wall_s,
        "kid_unit": "squared feature units (raw, not ×10³)",
        "ddpm_1000": scores(methods["ddpm_1000"]), "real_test": scores(reference),
        "controls": {c["label"]: scores(c) for c in controls.values()},
        "quality_bar": {k: v for k, v in bar.items() if k not in ("controls", "reference")},
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
