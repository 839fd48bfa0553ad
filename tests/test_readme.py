"""The README's Python example runs as written (with a stand-in workload)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_readme_library_example_runs() -> None:
    """The `python` block of the README executes and prints its measurement."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    namespace: dict[str, object] = {"run_prefill": lambda: sum(range(10_000))}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["m"].name == "prefill"  # type: ignore[attr-defined]
