"""All derivations through their registry and the `minivae derive` command.

The per-topic perturbation tests (a wrong formula makes its table fail) are in
test_derivations_1_7.py and test_derivations_8_13.py.
"""

from __future__ import annotations

import pytest

from minivae import derivations
from minivae.cli import main

TOPICS = list(derivations.topics())


def test_there_are_fifteen_topics_each_with_its_markdown_in_the_index():
    index = (derivations.HERE / "README.md").read_text()
    assert len(TOPICS) == 15
    for topic in TOPICS:
        assert (derivations.HERE / f"{topic}.md").is_file(), topic
        assert f"({topic}.md)" in index, topic


@pytest.mark.parametrize("topic", TOPICS)
def test_topic_passes_and_every_row_is_a_numbered_equation(topic: str) -> None:
    module = derivations.load(topic)
    table = module.run()
    assert isinstance(module.TITLE, str) and module.TITLE
    assert table.ok, "\n" + table.render()
    number = topic[:2].lstrip("0")
    assert all(row.equation.startswith(f"Eq {number}.") for row in table.rows)


@pytest.mark.parametrize("topic", ["04_jensen_elbo", "07_score_function", "08_iwae_bound", "11_ring", "14_straight_through"])
def test_plot_is_written(topic: str, tmp_path) -> None:
    assert derivations.run(topic, plot_dir=str(tmp_path)).ok
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 10_000


def test_derive_lists_topics(capsys):
    assert main(["derive"]) == 0
    listed = capsys.readouterr().out
    assert all(topic in listed for topic in TOPICS)


def test_derive_by_number_prints_the_table(capsys):
    assert main(["derive", "05"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out.replace("0 failed", "") and "1 of 1 topics passed" in out


def test_derive_exits_nonzero_on_a_failing_table(monkeypatch, capsys):
    module = derivations.load("05_kl_gaussians")
    monkeypatch.setattr(module, "kl_diag_standard", lambda mu, logvar: 2 * module.np.sum(logvar * 0 + 1, axis=-1))
    assert main(["derive", "05_kl_gaussians"]) == 1
    assert "FAILED: 05_kl_gaussians" in capsys.readouterr().out


def test_derive_unknown_topic_is_an_error(capsys):
    assert main(["derive", "no_such_topic"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_derive_show_prints_the_derivation_text(capsys):
    """A pip-installed user reads what the docstrings cite (`derivations/05_kl_gaussians.md, Eq. 5.1`)."""
    assert main(["derive", "05", "--show"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# 5. The KL divergence") and "Eq. 5.1" in out and "PASS" not in out
