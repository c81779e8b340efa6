"""The page's DOM-free modules (sync, rich text, error words) under node's own test runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testkit.processes import require_program

JS_TESTS = Path(__file__).parent / "js"


def test_js_unit_tests_pass(web_assets):
    # web_assets: rich.js imports linkifyjs from vendor/, where `make web-assets` copies it.
    node = require_program("node")
    result = subprocess.run(
        [node, "--test", *sorted(str(p) for p in JS_TESTS.glob("*.test.js"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
