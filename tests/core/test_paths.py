import os

from src.core.paths import CALLER_DIR, user_path


def test_a_typed_path_is_taken_from_where_the_user_stands_and_normalised(tmp_path, monkeypatch):
    monkeypatch.setenv(CALLER_DIR, str(tmp_path / "here"))
    assert user_path("tools/../data") == tmp_path / "here" / "data"  # no `..` left to read twice
    assert user_path("./a/./b/") == tmp_path / "here" / "a" / "b"
    assert user_path(tmp_path / "x" / ".." / "y") == tmp_path / "y"
    assert user_path("~/f") == user_path(os.path.expanduser("~/f"))
    monkeypatch.delenv(CALLER_DIR)
    monkeypatch.chdir(tmp_path)
    assert user_path("d/../e") == tmp_path / "e"
