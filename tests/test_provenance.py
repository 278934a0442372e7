"""serac.utils.provenance: the git-revision sentence every RESULTS.md writer puts in its header."""
from __future__ import annotations

import yaml

from serac import utils


def _exp(path, rev, history=None):
    path.mkdir(parents=True)
    env = {"env": {"git_revision": rev, **({"git_revisions": history} if history else {})}} if rev else {"model": {}}
    (path / "config.yaml").write_text(yaml.safe_dump(env))
    return path


def test_provenance_names_the_revisions_of_a_mixed_table(tmp_path, monkeypatch):
    monkeypatch.setattr(utils, "git_revision", lambda: "abc1234")
    same = {"a": _exp(tmp_path / "a", "abc1234"), "b": _exp(tmp_path / "b", "abc1234")}
    assert utils.provenance(same) == "git revision `abc1234` (the trainings and this table)."
    mixed = dict(same, c=_exp(tmp_path / "c", "0ff1ce5-dirty"), d=_exp(tmp_path / "d", None),
                 e=tmp_path / "missing", f=_exp(tmp_path / "f", "abc1234", ["0ff1ce5", "abc1234"]))
    line = utils.provenance(mixed)
    assert line.startswith("git revision `abc1234` (this table); the trainings ran at ")
    assert "`0ff1ce5-dirty`: c" in line and "`abc1234`: a, b" in line and "`not recorded`: d, e" in line
    assert "`0ff1ce5 then abc1234`: f" in line     # a run resumed at another revision
