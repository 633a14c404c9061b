"""The "Write your own op" guide runs: its code blocks, in order, in one namespace.

Each block carries its own assertions (gradcheck passes, check_op passes, the planted
mistake is caught, the Laplace samples have the right mean and spread, the VAE's loss falls).
"""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "course" / "write_your_own_op.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_guide_uses_public_names_only_and_every_block_runs(capsys):
    blocks = code_blocks(GUIDE.read_text())
    assert len(blocks) >= 6
    source = "\n".join(blocks)
    assert not re.search(r"\b(ops|backend)\._|\bfrom minivae\.ops import _|\._xp\b", source), "a private name"
    namespace: dict = {"__name__": "write_your_own_op"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{GUIDE.name} block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "ignores the upstream gradient" in out and "negative ELBO" in out
    assert namespace["loss"].item() < namespace["first"]
