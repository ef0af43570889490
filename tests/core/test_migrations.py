"""The history of run folders: a run saved by an older version is read as it was made, one saved by a newer
version is refused, and today's runs are written with the format they are in."""
import pytest
import yaml

from src.core import migrations
from src.core.config import load_config, load_saved, save_config, saved_config
from src.core.errors import UserError
from src.stages import run_stage


def test_a_run_is_saved_with_its_format_and_read_back_as_the_same_config(tmp_path):
    cfg = load_config("recommended", ["extra=faces", "optimizer=sgd", "optimizer_args={momentum: 0.8}"])
    save_config(cfg, tmp_path / "config.yaml")
    text = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert text[migrations.FORMAT_KEY] == migrations.RUN_FORMAT
    assert load_saved(tmp_path / "config.yaml") == cfg and "run_format" not in cfg.saved()


def test_a_step_applies_only_to_runs_saved_below_its_format(tmp_path):
    """A run of today's format that lacks head_init is not an old run: its key takes today's default; the same
    file without a format (saved before formats were written) took what the code then did."""
    saved = {k: v for k, v in load_config("seed").saved().items() if k != "head_init"}
    assert saved_config(saved).head_init == "timm"  # format 0: before the key
    assert saved_config({**saved, migrations.FORMAT_KEY: migrations.RUN_FORMAT}).head_init == "torch"


@pytest.mark.parametrize("value, words", [(migrations.RUN_FORMAT + 1, "saved by a newer version"),
                                          ("two", "not a run format"), (-1, "not a run format")])
def test_a_run_of_a_newer_or_unknown_format_is_refused_naming_the_file(tmp_path, capsys, value, words):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**load_config("seed").saved(), migrations.FORMAT_KEY: value}))
    with pytest.raises(UserError, match=words) as e:
        load_saved(path)
    assert str(path) in str(e.value)
    assert run_stage(lambda: load_saved(path)) == 2 and "Traceback" not in capsys.readouterr().err


def test_every_step_is_of_a_format_this_code_knows_and_in_order():
    formats = [f for f, _ in migrations.STEPS]
    assert formats == sorted(formats) and 1 <= min(formats) and max(formats) == migrations.RUN_FORMAT
    assert set(migrations.KEYS_ADDED_SINCE) <= set(load_config("seed"))  # each names a key of today
