import re
from pathlib import Path

from scripts.readme_commands import two_commands

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_has_the_install_and_demo_command_then_the_test_command() -> None:
    demo, tests = two_commands(README)
    assert "pip install -c constraints.txt -e ." in demo and demo.endswith("p2pbak demo")
    assert "pip install -c constraints.txt -e '.[test,sim]'" in tests and "pytest" in tests
    assert "lint-imports" in tests  # the architecture contract runs with the tests


def test_constraints_pin_every_dependency() -> None:
    """CI installs with constraints.txt: every dependency and test dependency is pinned."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for ds in project["optional-dependencies"].values()
                                        for d in ds)]
    pinned = {line.split("==")[0].lower().replace("_", "-")
              for line in (root / "constraints.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in wanted}
    assert names - pinned == set()


def test_every_exit_code_is_in_the_readme() -> None:
    from p2pbak.errors import ExitCode

    for code in ExitCode:
        assert f"| {int(code)} |" in README, f"exit code {int(code)} missing from README"
