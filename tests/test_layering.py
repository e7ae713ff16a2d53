"""Data flows one way: kernels_c -> perfmodel -> tuner -> reports. No reverse imports."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["kernels_c", "perfmodel", "tuner", "reports"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_reverse_imports():
    violations = []
    for rank, package in enumerate(ORDER):
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path) & set(ORDER[rank + 1:]):
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, violations


def test_layering_check_sees_every_package():
    # guards the test above against silently scanning nothing
    for package in ORDER:
        assert list((ROOT / package).glob("*.py")), package
