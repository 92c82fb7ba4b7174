from pathlib import Path

from scripts.readme_commands import two_commands

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_has_the_install_and_demo_command_then_the_test_command() -> None:
    demo, tests = two_commands(README)
    assert "pip install -e ." in demo and demo.endswith("p2pbak demo")
    assert "pip install -e '.[test,sim]'" in tests and "pytest" in tests  # sim tests too


def test_every_exit_code_is_in_the_readme() -> None:
    from p2pbak.errors import ExitCode

    for code in ExitCode:
        assert f"| {int(code)} |" in README, f"exit code {int(code)} missing from README"
