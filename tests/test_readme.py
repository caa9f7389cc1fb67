"""The README's fault table names, for each fault, the test that injects it: each named test exists."""

import re

from helpers import REPO


def test_every_test_the_fault_table_names_exists():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## When something goes wrong", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| fault") and "---" not in line]
    assert len(rows) >= 10
    sources = {path: path.read_text() for path in (REPO / "tests").rglob("test_*.py")}
    for row in rows:
        for name in re.findall(r"`([^`]*test_[^`]*)`", row.rsplit("|", 2)[-2]):
            file_part, _, function = name.partition("::")
            if file_part.endswith(".py"):
                assert (REPO / file_part).is_file(), name
                assert not function or f"def {function}(" in (REPO / file_part).read_text(), name
            else:  # a bare test name: defined in some test file
                assert any(f"def {file_part}(" in text for text in sources.values()), name
