"""The README's plugin examples are the plugins the tests install, word for word, and the storage
plugin's contract-kit test runs as written."""

import os
import re
import shutil
import subprocess
import sys

from tests.conftest import TESTS, env_with

README = (TESTS.parent / "README.md").read_text()


def test_readme_plugin_example_is_the_tested_plugin():
    blocks = re.findall(r"```python\n# toto_example/plugin.py\n(.*?)```", README, re.S)
    assert blocks, "README lost its 'Writing a plugin' example"
    source = (TESTS / "plugins" / "toto_example" / "src" / "toto_example" / "plugin.py").read_text()
    assert blocks[0] == source


def test_readme_quick_start_commands_exist():
    assert "python3 tools/nox.py -s demo" in README and "python3 tools/nox.py -s tests" in README
    assert "python3 tools/nox.py -s tests" in (TESTS.parent / ".ci" / "run").read_text()


def readme_block(title: str) -> str:
    blocks = re.findall(rf"```python\n# {re.escape(title)}\n(.*?)```", README, re.S)
    assert blocks, f"README lost its {title} example"
    return blocks[0]


def test_readme_signing_plugin_is_the_tested_plugin():
    source = TESTS / "plugins" / "toto_example_signing" / "src" / "toto_example_signing" / "plugin.py"
    assert readme_block("toto_example_signing/plugin.py") == source.read_text()


def test_readme_contract_kit_test_runs_as_written(plugin_path, tmp_path):
    """The plugin's own test, as the README shows it, passes with pytest against toto-example."""
    written = readme_block("tests/test_example.py")
    shipped = TESTS / "plugins" / "toto_example" / "tests" / "test_example.py"
    assert written == shipped.read_text()
    shutil.copytree(shipped.parent, tmp_path / "tests")
    env = dict(os.environ, **env_with(plugin_path, "toto_example"))
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+ passed", done.stdout) and "failed" not in done.stdout, done.stdout
