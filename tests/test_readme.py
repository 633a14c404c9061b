"""The README's example must run and do what it says."""

import re
from pathlib import Path

import minivae as mv

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_ten_line_example_trains_and_gradchecks(capsys):
    code = re.search(r"## Ten lines\s+```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["loss"].item() < 0.01  # it learned the product
    printed = capsys.readouterr().out
    assert "PASS" in printed and "FAIL" not in printed


def test_readme_quick_start_is_two_commands_matching_ci():
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2
    assert commands[0].endswith("minivae demo")
    test_command = commands[1].split("&&")[-1].strip()
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
    assert mv.__version__
