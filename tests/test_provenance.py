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


def test_git_revision_ignores_recipe_outputs(tmp_path):
    """A recipe writes its RESULTS*.md and results/ into the tree: a later run of the same checkout is not "dirty"
    because of them; any other tracked change is."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    recipe = tmp_path / "egs" / "corpus" / "task"
    (recipe / "results").mkdir(parents=True)
    for f in ("RESULTS.md", "RESULTS-geo_region.md", "results/wer.png", "run.sh", "notes.md"):
        (recipe / f).write_text("a\n")
    (tmp_path / "RESULTS.md").write_text("a\n")   # not under egs/: counts
    git("add", ".")
    git("commit", "-q", "-m", "x")
    rev = utils.git_revision(tmp_path)
    assert rev and not rev.endswith("-dirty") and rev != "unknown"
    for f in ("RESULTS.md", "RESULTS-geo_region.md", "results/wer.png"):
        (recipe / f).write_text("b\n")
    assert utils.git_revision(tmp_path) == rev
    for changed in (recipe / "run.sh", recipe / "notes.md", tmp_path / "RESULTS.md"):
        changed.write_text("b\n")
        assert utils.git_revision(tmp_path) == rev + "-dirty", changed
        git("checkout", "--", str(changed.relative_to(tmp_path)))
    assert utils.is_recipe_output("egs/a/b/RESULTS-encoders.md") and utils.is_recipe_output("egs/a/b/results/x.png")
    assert not utils.is_recipe_output("serac/RESULTS.md") and not utils.is_recipe_output("egs/a/b/run.sh")
