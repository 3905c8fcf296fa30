import pytest

from yilightning.safety import CATEGORIES, CATEGORY_NAMES, HAZARD_CODES, Policy, hazard_codes


def test_taxonomy_maps_every_category_to_hazard_codes():
    assert len(CATEGORIES) == 14 and len(set(CATEGORY_NAMES)) == 14
    assert all(c.codes and set(c.codes) <= set(HAZARD_CODES) for c in CATEGORIES)
    assert hazard_codes(["violence", "hate_speech", "self_harm"]) == ["S1", "S9", "S10", "S11"]


def test_default_policy_loads_and_covers_every_category():
    pol = Policy.default()
    assert set(pol.categories) == set(CATEGORY_NAMES)
    assert pol.categories["violence"].action == "block" and pol.categories["superstition"].action == "label"
    assert pol.unsafe_threshold == "auto"


def test_policy_from_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("unsafe_threshold: 0.4\ncategories:\n  violence: label\n  privacy: {action: rewrite, threshold: 0.7}\n")
    pol = Policy.from_yaml(path)
    assert pol.unsafe_threshold == 0.4 and pol.categories["violence"].action == "label"
    assert pol.categories["privacy"].threshold == 0.7 and pol.categories["self_harm"].action == "block"


@pytest.mark.parametrize("data, match", [
    ({"categories": {"violence": "delete"}}, "categories.violence.action must be one of"),
    ({"categories": {"violence": {"action": "block", "threshold": 2}}}, r"threshold must be a number in \[0, 1\]"),
    ({"categories": {"violence": {"threshold": None}}}, r"threshold must be a number in \[0, 1\], got None"),
    ({"unsafe_threshold": "high"}, r"unsafe_threshold must be a number in \[0, 1\], got 'high'"),
    ({"stream_holdback": "64"}, "stream_holdback must be an integer >= 0"),
    ({"categories": {"weather": "block"}}, "unknown categories"),
    ({"unsafe_thresh": 0.3}, "unknown keys"),
    ({"pii_action": "block"}, "pii_action must be one of"),
    ({"stream_lookback": 0}, "stream_lookback must be an integer >= 1"),
])
def test_bad_policies_name_the_field(data, match):
    with pytest.raises(ValueError, match=match):
        Policy.from_dict(data)


def test_quoted_numbers_in_a_policy_are_read_as_numbers():
    p = Policy.from_dict({"categories": {"violence": {"threshold": "0.4"}}, "jailbreak_factor": "0.7"})
    assert p.categories["violence"].threshold == 0.4 and p.jailbreak_factor == 0.7
