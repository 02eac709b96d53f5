"""The traffic plan: what `traffic`/`shadow` config a user can give and what each one means."""

import pytest

from components.traffic import Shadow, TrafficError, plan_traffic

LIVE = ["151", "152", "153"]  # oldest first


def test_split_names_every_live_build_and_unnamed_ones_stay_warm_at_zero():
    plan = plan_traffic({"152": 90, "153": 10}, LIVE)
    assert dict(plan.weights) == {"151": 0, "152": 90, "153": 10}
    assert list(plan.weights) == LIVE
    assert plan.serving == ("152", "153")
    assert plan.champion == "152"
    assert plan.shadow is None


@pytest.mark.parametrize("empty", [None, "", {}, "{}"])
def test_empty_traffic_gives_the_newest_release_everything(empty):
    plan = plan_traffic(empty, LIVE)
    assert dict(plan.weights) == {"151": 0, "152": 0, "153": 100}
    assert plan.champion == "153"


def test_json_text_from_the_command_line_is_accepted():
    # pulumi up --config traffic='{"152": 100}' (rollback to the warm release)
    plan = plan_traffic('{"152": 100}', LIVE)
    assert dict(plan.weights) == {"151": 0, "152": 100, "153": 0}


def test_builds_with_dots_are_names_not_numbers():
    plan = plan_traffic({"20180523.5": 100}, ["20180522.1", "20180523.5"])
    assert plan.champion == "20180523.5"


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"152": 90}, "weights sum to 90, not 100"),
        ({"152": 60, "153": 60}, "weights sum to 120, not 100"),
        ({"150": 100}, "build 150 is not live (live builds: 151, 152, 153)"),
        ({"152": 110, "153": -10}, "weight of build 153 is -10; a weight is between 0 and 100"),
        ({"152": 99.5, "153": 0.5}, "weight of build 152 must be a whole percent, got 99.5"),
        ({"152": "100"}, "weight of build 152 must be a whole percent, got '100'"),
        ({"152": True}, "must be a whole percent, got True"),
        ('{"152": 100', "traffic is not valid JSON"),
        ("[100]", "traffic must be a JSON object"),
    ],
)
def test_bad_traffic_is_rejected_with_what_to_fix(traffic, message):
    with pytest.raises(TrafficError, match="rejected|traffic") as caught:
        plan_traffic(traffic, LIVE)
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(TrafficError) as caught:
        plan_traffic({"150": 50, "152": -5, "153": "x"}, LIVE)
    text = str(caught.value)
    assert "build 150 is not live" in text
    assert "weight of build 152 is -5" in text
    assert "weight of build 153 must be a whole percent" in text


def test_nothing_live_cannot_be_routed():
    with pytest.raises(TrafficError, match="no live release"):
        plan_traffic(None, [])


def test_champion_is_the_build_with_most_traffic_and_the_incumbent_on_a_tie():
    assert plan_traffic({"151": 20, "152": 30, "153": 50}, LIVE).champion == "153"
    assert plan_traffic({"152": 50, "153": 50}, LIVE).champion == "152"


def test_shadow_mirrors_a_share_to_a_live_release_that_serves_nothing():
    plan = plan_traffic({"152": 100}, LIVE, shadow={"build": "153", "percent": 10})
    assert plan.shadow == Shadow("153", 10)
    assert plan.serving == ("152",)
    assert plan_traffic({"152": 100}, LIVE, shadow='{"build": "153"}').shadow == Shadow("153", 100)


def test_empty_traffic_with_the_newest_as_shadow_keeps_the_previous_release_serving():
    plan = plan_traffic(None, LIVE, shadow={"build": "153", "percent": 20})
    assert dict(plan.weights) == {"151": 0, "152": 100, "153": 0}


@pytest.mark.parametrize(
    ("shadow", "message"),
    [
        ({"build": "150"}, "build 150 is not live"),
        ({"build": "153", "percent": 0}, "percent must be a whole number from 1 to 100, got 0"),
        ({"build": "153", "percent": 101}, "got 101"),
        ({"percent": 10}, "'build' is missing"),
        ({"build": "153", "share": 10}, "unknown keys ['share']"),
    ],
)
def test_bad_shadow_is_rejected(shadow, message):
    with pytest.raises(TrafficError, match="shadow") as caught:
        plan_traffic({"152": 100}, LIVE, shadow=shadow)
    assert message in str(caught.value)


def test_a_shadow_cannot_also_carry_traffic():
    with pytest.raises(TrafficError, match="shadow build 153 also has 10% of traffic"):
        plan_traffic({"152": 90, "153": 10}, LIVE, shadow={"build": "153", "percent": 5})


def test_a_lone_shadow_leaves_nothing_to_serve():
    with pytest.raises(TrafficError, match="only live build, 153, is the shadow"):
        plan_traffic(None, ["153"], shadow={"build": "153"})


# --- modes: explicit traffic stays explicit ------------------------------------------------------
EXPLICIT_152 = {"mode": "explicit", "weights": {"151": 0, "152": 100, "153": 0}}


def test_an_explicit_split_stays_when_traffic_is_not_set_and_a_new_build_joins_at_zero():
    plan = plan_traffic(None, LIVE + ["154"], previous=EXPLICIT_152)
    assert dict(plan.weights) == {"151": 0, "152": 100, "153": 0, "154": 0}
    assert plan.mode == "explicit" and plan.champion == "152"


def test_a_new_build_joins_an_explicit_split_at_the_canary_percent():
    previous = {"mode": "explicit", "weights": {"151": 0, "152": 70, "153": 30}}
    plan = plan_traffic("", LIVE + ["154"], previous=previous, canary_percent=10)
    assert dict(plan.weights) == {"151": 0, "152": 63, "153": 27, "154": 10}
    assert plan.mode == "explicit"


@pytest.mark.parametrize("clear", ["auto", {}, "{}"])
def test_auto_returns_to_the_newest_taking_everything(clear):
    plan = plan_traffic(clear, LIVE + ["154"], previous=EXPLICIT_152)
    assert dict(plan.weights) == {"151": 0, "152": 0, "153": 0, "154": 100} and plan.mode == "auto"


def test_auto_stays_auto_and_a_new_explicit_split_replaces_the_old_one():
    assert plan_traffic(None, LIVE, previous={"mode": "auto", "weights": {"153": 100}}).mode == "auto"
    assert (
        plan_traffic(None, LIVE, previous={"weights": {"153": 100}}).mode == "auto"
    )  # outputs of older code
    plan = plan_traffic({"153": 100}, LIVE, previous=EXPLICIT_152)
    assert dict(plan.weights) == {"151": 0, "152": 0, "153": 100} and plan.mode == "explicit"


def test_a_carried_split_whose_build_is_gone_is_rejected_naming_it():
    with pytest.raises(TrafficError, match="the split in force .* build 152 is not live"):
        plan_traffic(None, ["153", "154"], previous=EXPLICIT_152)


# --- auto mode with a canary percent: the nightly's new build joins as a canary ------------------
AUTO_153 = {"mode": "auto", "weights": {"151": 0.0, "152": 0.0, "153": 100.0}}  # as outputs read back


def test_in_auto_mode_a_canary_percent_makes_a_new_build_join_as_a_canary_and_the_split_explicit():
    plan = plan_traffic(None, LIVE + ["154"], previous=AUTO_153, canary_percent=10)
    assert dict(plan.weights) == {"151": 0, "152": 0, "153": 90, "154": 10}
    assert plan.mode == "explicit" and plan.champion == "153" and plan.serving == ("153", "154")
    # The next update that sets no traffic keeps the canary where it is: no newest-takes-all.
    again = plan_traffic(None, LIVE + ["154"], previous={"mode": plan.mode, "weights": plan.weights})
    assert dict(again.weights) == dict(plan.weights)


def test_in_auto_mode_without_a_new_build_or_a_canary_percent_the_newest_takes_everything():
    assert dict(plan_traffic(None, LIVE, previous=AUTO_153, canary_percent=10).weights)["153"] == 100
    assert dict(plan_traffic(None, LIVE + ["154"], previous=AUTO_153).weights)["154"] == 100
    # the first release of a stack has nothing to be a canary beside
    assert dict(plan_traffic(None, ["151"], previous=None, canary_percent=10).weights) == {"151": 100}


def test_in_auto_mode_a_canary_needs_the_serving_build_still_live():
    # 153, which served everything, was retired in the same update: the newest takes all.
    plan = plan_traffic(None, ["152", "154"], previous=AUTO_153, canary_percent=10)
    assert dict(plan.weights) == {"152": 0, "154": 100} and plan.mode == "auto"


def test_traffic_auto_given_explicitly_still_gives_the_newest_everything():
    plan = plan_traffic("auto", LIVE + ["154"], previous=AUTO_153, canary_percent=10)
    assert dict(plan.weights)["154"] == 100 and plan.mode == "auto"
