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
