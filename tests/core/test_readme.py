"""The README's plugin example is the plugin the tests install, word for word."""

import re

from tests.conftest import TESTS

README = (TESTS.parent / "README.md").read_text()


def test_readme_plugin_example_is_the_tested_plugin():
    blocks = re.findall(r"```python\n# toto_example/plugin.py\n(.*?)```", README, re.S)
    assert blocks, "README lost its 'Writing a plugin' example"
    source = (TESTS / "plugins" / "toto_example" / "src" / "toto_example" / "plugin.py").read_text()
    assert blocks[0] == source


def test_readme_quick_start_commands_exist():
    assert "python3 tools/nox.py -s demo" in README and "python3 tools/nox.py -s tests" in README
    assert "python3 tools/nox.py -s tests" in (TESTS.parent / ".ci" / "run").read_text()
