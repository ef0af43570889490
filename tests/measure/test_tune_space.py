"""A search space is read and checked like a recipe: what is wrong names the file, the line and the closest name."""
import pytest

from src.core.errors import ConfigError
from src.measure.tune_space import check_with_recipe, read_space, sample, space_file, without_outside


class Draws:
    """An Optuna trial's suggest_* answered by the low end (or the first choice), and what was asked."""
    def __init__(self):
        self.asked = []

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        return choices[0]

    def suggest_float(self, name, low, high, step=None, log=False):
        self.asked.append((name, log, step))
        return low

    def suggest_int(self, name, low, high, step=1, log=False):
        self.asked.append((name, log, step))
        return low


def test_the_default_space_reads_and_a_conditional_key_is_drawn_only_where_its_condition_holds():
    dims = read_space(space_file("default"))
    keys = [d.key for d in dims]
    assert {"lr", "age_boundary", "loss", "focal_gamma", "augment", "extra"} <= set(keys)
    check_with_recipe(dims, "recommended", ["epochs=3"])
    draws = Draws()
    changes = sample(dims, draws)
    assert "lr=0.0001" in changes and "loss=focal" in changes and "scheduler=none" in changes
    assert any(c.startswith("focal_gamma=") for c in changes)  # loss=focal: its gamma is searched
    assert not any(c.startswith(("warmup_epochs=", "label_smoothing=")) for c in changes)  # their conditions fail
    assert ("lr", True, None) in draws.asked  # log-uniform
    kept, left = without_outside(dims)
    assert left == ["extra", "extra_ages"] and all(not d.key.startswith("extra") for d in kept)


@pytest.mark.parametrize("text, words", [
    ("lr: {log_float: [1.0e-4, 1.0e-2]}\nlrr: {float: [0.1, 0.2]}\n",
     r"line 2: lrr: not a config key \(did you mean lr"),
    ("lr: {log_flaot: [1.0e-4, 1.0e-2]}\n", r"line 1: lr: log_flaot is not a distribution \(did you mean log_float"),
    ("age_boundary: {int: [20, 60]}\n", r"line 1: age_boundary: 20: must be in 31..60"),
    ("loss: {choice: [focal, hinge]}\n", r"line 1: loss: 'hinge': loss=hinge: not a loss of the table"),
    ("lr: {log_float: [0.0, 1.0e-2]}\n", "a log range starts above 0"),
    ("lr: {float: [1.0e-2, 1.0e-4]}\n", "low must be below high"),
    ("lr: {log_float: [1.0e-4, 1.0e-2], step: 0.001}\n", "for float and int ranges only"),
    ("focal_gamma: {float: [1, 3], when: {loss: focal}}\n", "when: loss is not a choice of this space listed before"),
    ("loss: {choice: [focal, ce]}\nfocal_gamma: {float: [1, 3], when: {loss: f1}}\n",
     r"line 2: focal_gamma: when: loss: \['f1'\] not among its choices"),
    ("epochs: {int: [1, 3], choice: [1]}\n", "one distribution"),
    ("[lr]\n", "a search space is a mapping"),
])
def test_a_bad_space_is_refused_naming_the_file_line_and_closest_name(tmp_path, text, words):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as e:
        read_space(path)
    assert str(path) in str(e.value)


def test_a_value_the_recipe_refuses_with_the_others_is_named_before_any_trial(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("scheduler: {choice: [none, cosine]}\nwarmup_epochs: {float: [0.0, 2.0], when: {scheduler: "
                    "cosine}}\n")
    with pytest.raises(ConfigError, match=r"line 2: warmup_epochs=2.0 with --config seed: .*the warm-up would last"):
        check_with_recipe(read_space(path), "seed", ["epochs=2"])
    with pytest.raises(ConfigError, match=r"not a space of configs/tune/ \(default, quick"):
        space_file("defualt")
