"""Project-level checks: dependencies agree, torch is pinned, nothing unpickles, docstrings."""
import ast
import json
import importlib
import inspect
import pkgutil
import re
import tomllib
from pathlib import Path

import yaml

import dipddpm_lib

REPO = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    pip = [p for p in pip if not p.startswith("-e")]
    assert {d.replace(" ", "") for d in deps} == {p.replace(" ", "") for p in pip}


def test_torch_is_pinned_exactly():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_deps = [d for d in deps if _name(d) == "torch"]
    assert torch_deps == ["torch==2.13.0"]
    assert not any(_name(d) in {"torchvision", "torchaudio"} for d in deps)


def _sources():
    for folder in ("dipddpm_lib", "scripts", "tests"):
        yield from (REPO / folder).rglob("*.py")


def test_nothing_unpickles():
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                assert ok, f"{path}:{node.lineno} torch.load without weights_only=True"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in {"pickle", "dill", "joblib"} for n in names), \
                    f"{path}:{node.lineno} imports a pickle module"


def test_every_public_function_has_a_docstring():
    missing = []
    for mod_info in pkgutil.walk_packages(dipddpm_lib.__path__, "dipddpm_lib."):
        mod = importlib.import_module(mod_info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{mod.__name__}.{name}")
                if inspect.isclass(obj):
                    for mname, m in vars(obj).items():
                        if inspect.isfunction(m) and not mname.startswith("_") and not inspect.getdoc(m):
                            missing.append(f"{mod.__name__}.{name}.{mname}")
    assert not missing, missing


#: Digits a Markdown cell may hold outside maths, code and headings: citation years, and the
#: name of the method DIP→t0 (its t0 is a symbol, not a value).
_ALLOWED_NUMBER = re.compile(r"\(?(19|20)\d\d[a-z]?[),;:.]*|\(?\**(DIP→t0|BM3D)\**[),;:.]*")


def typed_numbers(cells) -> list[str]:
    """Every token with a digit in Markdown cells, outside $maths$, `code` and headings, that
    is not a citation year: numbers in prose must be formatted from config or results."""
    hits = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"(?s:\$\$.*?\$\$)|\$[^$]*\$|`[^`]*`|^#+ .*$", "", "".join(cell["source"]),
                      flags=re.M)
        hits += [m.group(0) for m in re.finditer(r"[^\s]*\d[^\s]*", text)
                 if not _ALLOWED_NUMBER.fullmatch(m.group(0))]
    return hits


def test_typed_numbers_are_found():
    cells = [{"cell_type": "markdown", "source": ["## Table 2\n", "Three seeds: 3 of them, σ = 25 "
                                                  "(Ho et al. 2020). $T = 1000$ and `steps=50`.\n",
                                                  "$$x_{1000}\n= 2$$ on 16×16 digits\n"]},
             {"cell_type": "code", "source": ["x = 5"]}]
    assert typed_numbers(cells) == ["3", "25", "16×16"]


def test_no_number_is_typed_into_notebook_markdown():
    """A number typed into prose goes stale when the config or results change (for example
    "three seeds" when the config sets two): read it from them in a Markdown(f"…") cell."""
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        hits = typed_numbers(json.loads(nb.read_text())["cells"])
        assert not hits, f"{nb.name}: typed numbers in Markdown: {hits}"


def test_no_notebook_import_hides_one_of_its_parameters():
    """`from dipddpm_lib import tuned` in a notebook whose parameter is `tuned` silently
    replaces the parameter by the module: no import may bind a parameter's name."""
    import ast

    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        params = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
        if params is None:
            continue
        names = {t.id for node in ast.parse("".join(params["source"])).body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        for cell in cells:
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    bound = {(a.asname or a.name).split(".")[0] for a in node.names}
                    assert not bound & names, f"{nb.name}: an import binds parameter(s) {bound & names}"
