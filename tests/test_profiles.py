import pytest

from dipddpm_lib import PROFILES, get_profile


def test_three_profiles_scale_up():
    smoke, quick, full = (PROFILES[k] for k in ("smoke", "quick", "full"))
    assert smoke.train_steps < quick.train_steps < full.train_steps
    assert smoke.dip_iterations < quick.dip_iterations < full.dip_iterations
    assert len(quick.seeds) >= 3
    assert full.device == "cuda" and quick.device == "cpu"


def test_override_single_field_keeps_the_rest():
    p = get_profile("quick", train_steps=7, unet_channels=[8, 16])
    assert p.train_steps == 7 and p.unet_channels == (8, 16)
    assert p.batch_size == PROFILES["quick"].batch_size


def test_unknown_profile_names_valid_choices():
    with pytest.raises(ValueError, match="smoke, quick, full"):
        get_profile("fast")


def test_unknown_field_is_an_error():
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("quick", trian_steps=3)


def test_every_profile_names_only_bundled_photos():
    from dataclasses import fields

    from dipddpm_lib.data import PHOTOS

    for prof in PROFILES.values():
        for f in fields(prof):
            value = getattr(prof, f.name)
            if "photos" in f.name:
                assert set(value) <= set(PHOTOS), (prof.name, f.name, value)


# --------------------------------------------------------------------------- photo sets
def test_photo_sets_are_disjoint_and_every_chapter_scores_eval_photos():
    from dipddpm_lib.profiles import CHAPTER_PHOTO_FIELDS, PHOTO_SETS, check_photo_sets

    for prof in PROFILES.values():
        assert check_photo_sets(prof) is prof
        sets = [set(getattr(prof, f)) for f in PHOTO_SETS]
        assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        for f in CHAPTER_PHOTO_FIELDS:
            assert set(getattr(prof, f)) <= set(prof.eval_photos), (prof.name, f)
    quick = PROFILES["quick"]
    assert quick.eval_photos == ("astronaut", "camera", "coffee", "chelsea")
    assert quick.tune_photos == ("rocket", "coins", "china")
    assert set(quick.photos) == set(quick.dip_baseline_photos) == {"astronaut", "camera", "coffee"}
    assert {"motorcycle_left", "motorcycle_right", "flower"} <= set(quick.prior_train_photos)
    assert "cat" not in PROFILES["full"].photos  # scikit-image's cat is chelsea


@pytest.mark.parametrize("change,match", [
    ({"tune_photos": ("rocket", "camera")}, r"eval_photos and tune_photos must be disjoint; both hold \['camera'\]"),
    ({"prior_train_photos": ("coins", "moon")}, r"tune_photos and prior_train_photos must be disjoint"),
    ({"photos": ("astronaut", "rocket")}, r"photos holds \['rocket'\], which are not eval photos; "
                                          r"valid choices \(eval_photos\): astronaut, camera"),
    ({"dip_baseline_photos": ("moon",)}, r"not eval photos"),
    ({"eval_photos": ("astronaut", "lena")}, r"unknown photograph in eval_photos .*'lena'; valid choices: astronaut"),
    ({"eval_photos": ("astronaut", "cat")}, r"same picture as 'chelsea'"),
    ({"tune_photos": ()}, r"non-empty list"),
    ({"tune_photos": ("rocket", "rocket")}, r"distinct"),
])
def test_bad_photo_sets_are_a_clear_error(change, match):
    import dataclasses

    from dipddpm_lib.profiles import check_photo_sets

    with pytest.raises(ValueError, match=match):
        check_photo_sets(dataclasses.replace(PROFILES["quick"], **change))


def test_get_profile_checks_overridden_photo_sets_but_lets_a_point_use_tune_photos():
    with pytest.raises(ValueError, match="must be disjoint"):
        get_profile("quick", tune_photos=["rocket", "astronaut"])
    assert get_profile("quick", photos=["rocket"]).photos == ("rocket",)  # an ablation point


def test_a_device_this_machine_lacks_is_one_clear_error_unless_the_cpu_is_asked_for(monkeypatch):
    import torch

    from dipddpm_lib.profiles import check_device, run_device

    assert run_device(get_profile("quick")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device.*PROFILE=quick.*-p device cpu.*DEVICE=cpu"):
        check_device(get_profile("full"))
    assert run_device(get_profile("full", device="cpu")) == "cpu"
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        check_device(get_profile("quick", device="tpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_device(get_profile("full")) == "cuda"


def test_chapter_plans_check_the_device_before_any_work(monkeypatch, tmp_path):
    import torch

    from dipddpm_lib.experiments import ddpm_baseline, dip_baseline, early_stopping

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for plan in (lambda **k: ddpm_baseline.make_plan("full", **k),
                 lambda **k: dip_baseline.make_plan("full", **k),
                 lambda **k: early_stopping.make_setup("full", **k)):
        with pytest.raises(ValueError, match="no CUDA device"):
            plan()
    (tmp_path / "a.png").write_bytes(b"")  # the plan checks that the folder holds images
    p = ddpm_baseline.make_plan("full", device="cpu", data_dir=str(tmp_path)).profile
    assert p.device == "cpu" and p.data_dir == str(tmp_path)  # DATA reaches chapter 01
    assert dip_baseline.make_plan("full", device="cpu").profile.device == "cpu"
    assert early_stopping.make_setup("full", device="cpu")[0].device == "cpu"
