"""The layout's rules, checked: what runs in the generation process imports nothing of the server,
the server's faces import no model code, the engine imports no face, and modules stay small."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.server_process import PROJECT_ROOT

APP = PROJECT_ROOT / "app"
MODEL_CODE = (
    "torch", "diffusers", "transformers", "app.pipeline.generator", "app.pipeline.loading", "app.pipeline.process",
    "app.pipeline.previews", "app.pipeline.preview_renderer", "app.pipeline.schedulers", "app.pipeline.cpu_speed",
    "app.pipeline.failures", "app.testing",
)
SERVER_CODE = ("app.engine", "app.web", "app.ui", "components", "nicegui", "fastapi", "starlette", "uvicorn")
MAX_LINES = 300


def modules_loaded_by(*imports: str) -> set[str]:
    """sys.modules of a fresh interpreter after importing `imports` (what they pull in, transitively)."""
    code = "import json, sys\n" + "".join(f"import {name}\n" for name in imports)
    code += "print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def matching(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if any(name == p or name.startswith(p + ".") for p in prefixes))


def test_the_server_and_its_faces_import_no_model_code():
    loaded = modules_loaded_by("app.web.server", "app.ui.pages", "app.engine", "app.web.api", "components")
    assert matching(loaded, MODEL_CODE) == []


def test_the_generation_process_imports_nothing_of_the_server():
    loaded = modules_loaded_by("app.pipeline.process", "app.pipeline.preload")
    assert "app.pipeline.generator" in loaded and "diffusers" in loaded  # the check below means something
    assert matching(loaded, SERVER_CODE) == []


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_engine_imports_no_face():
    for path in (APP / "engine").rglob("*.py"):
        faces = matching(imported_modules(path), ("app.web", "app.ui", "components"))
        assert faces == [], f"{path.relative_to(PROJECT_ROOT)} imports {faces}"


def test_pipeline_code_imports_nothing_of_the_engine_web_or_ui():
    for path in (APP / "pipeline").rglob("*.py"):
        server = matching(imported_modules(path), ("app.engine", "app.web", "app.ui", "components"))
        assert server == [], f"{path.relative_to(PROJECT_ROOT)} imports {server}"


def test_modules_stay_small_or_say_why():
    for path in [*APP.rglob("*.py"), *(PROJECT_ROOT / "components").rglob("*.py")]:
        lines = len(path.read_text().splitlines())
        if lines <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert f"Longer than {MAX_LINES} lines" in docstring, (
            f"{path.relative_to(PROJECT_ROOT)} has {lines} lines; split it, or say why in its docstring"
        )
