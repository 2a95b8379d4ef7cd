"""The package's imports go one way: a module imports only from its own package or from lower layers.

Every `import gpumarket...` and `from gpumarket... import` under offchain/gpumarket counts, relative
ones, ones inside functions and ones under `if TYPE_CHECKING:` included. Packages in one layer do
not import each other; entry points (layer 6) may import anything. docs/ARCHITECTURE.md, "Layers",
says the same; a new package or top-level module must be placed here before the test passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "offchain" / "gpumarket"

# Layer of each package (or top-level module), low to high.
LAYERS: dict[int, tuple[str, ...]] = {
    # Foundations: signatures, the web stack, SQLite setup, service lifecycle, joining a Ray
    # cluster. The root package (`gpumarket`, only __version__) is here too: importing anything runs it.
    0: (
        "gpumarket",
        "gpumarket.signing",
        "gpumarket.web",
        "gpumarket.storage",
        "gpumarket.lifecycle",
        "gpumarket.cluster",
    ),
    # Domain tools on the foundations: test committee keys, hardware and metering, OCI images.
    1: ("gpumarket.testing", "gpumarket.measure", "gpumarket.containers"),
    # Settings and the chain (web3 access, events, deployments).
    2: ("gpumarket.config", "gpumarket.chain"),
    # The provider agent's API as both sides share it: spec, result bundle, signed requests, its client.
    3: ("gpumarket.agentapi",),
    # The three roles and the read-only dashboard, independent of each other.
    4: ("gpumarket.provider", "gpumarket.client", "gpumarket.oracle", "gpumarket.dashboard"),
    # What the command line does, as functions: every role's actions.
    5: ("gpumarket.actions",),
    # Entry points: command lines, demo, soak, the oracle's benchmark, the whole market's
    # benchmark under load (and every module named `cli`, see ENTRY_POINT_NAME).
    6: (
        "gpumarket.cli",
        "gpumarket.__main__",
        "gpumarket.demo",
        "gpumarket.soak",
        "gpumarket.oracle.bench",
        "gpumarket.marketbench",
    ),
}
ENTRY_POINT_LAYER = 6
ENTRY_POINT_NAME = "cli"  # gpumarket.<package>.cli is an entry point whatever its package's layer


def layer_of(module: str) -> int | None:
    """The layer of `module`: its longest listed prefix's (the root package matches itself only)."""
    if module.rsplit(".", 1)[-1] == ENTRY_POINT_NAME:
        return ENTRY_POINT_LAYER
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for layer, names in LAYERS.items():
        for name in names:
            matches = module == name or (name != "gpumarket" and module.startswith(name + "."))
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), layer)
    return None if best is None else best[1]


def top_package(module: str) -> str:
    """`gpumarket.oracle.jobs` -> `gpumarket.oracle`; the root stays itself."""
    return ".".join(module.split(".")[:2])


def module_sources(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (`pkg/__init__.py` is `pkg`)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, source: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """(imported gpumarket module, line) for every import in `source`; `from P import n` names the
    module P.n when there is one (`from gpumarket.oracle import bench` imports the benchmark)."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.append((submodule if submodule in known else target, node.lineno))
    ours = [(name, line) for name, line in found if name == "gpumarket" or name.startswith("gpumarket.")]
    return list(dict.fromkeys(ours))  # one edge per statement, however many names it imports


def violations(modules: dict[str, str], packages: set[str]) -> list[str]:
    """Every edge against the layering, as `module -> imported (layer a -> layer b)`.

    `modules` maps each module to its source; `packages` names those that are packages."""
    known = set(modules)
    found = []
    for module, source in sorted(modules.items()):
        own = layer_of(module)
        assert own is not None, f"{module} has no layer"
        for target, line in imported_modules(module, source, module in packages, known):
            theirs = layer_of(target)
            assert theirs is not None, f"{module}:{line} imports {target}, which has no layer"
            upward = theirs > own
            sideways = theirs == own and top_package(target) != top_package(module)
            if own != ENTRY_POINT_LAYER and (upward or sideways):
                found.append(f"{module}:{line} -> {target} (layer {own} -> layer {theirs})")
    return found


def test_every_package_and_module_has_a_layer() -> None:
    unplaced = sorted(name for name in module_sources(PACKAGE_ROOT) if layer_of(name) is None)
    assert not unplaced, f"place these in tests/test_layers.py LAYERS: {unplaced}"


def test_imports_go_one_way() -> None:
    sources = module_sources(PACKAGE_ROOT)
    modules = {name: path.read_text() for name, path in sources.items()}
    packages = {name for name, path in sources.items() if path.name == "__init__.py"}
    found = violations(modules, packages)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_the_check_sees_upward_sideways_relative_and_type_checking_imports() -> None:
    # A small package in memory: the check must flag each of these edges, and only these.
    modules = {
        "gpumarket.chain.market": "from gpumarket.oracle.jobs import JobMonitor\n",  # upward
        "gpumarket.client.jobs": "def f():\n    from gpumarket.oracle import service\n",  # sideways, in a function
        "gpumarket.oracle.jobs": (
            "from typing import TYPE_CHECKING\n"
            "from ..agentapi.client import ProviderApi\n"  # downward, relative: allowed
            "if TYPE_CHECKING:\n    from ..actions import jobs\n"  # upward, relative, for types only
        ),
        "gpumarket.oracle.service": "from gpumarket.oracle import jobs\n",  # own package: allowed
        "gpumarket.provider.cli": "import gpumarket.actions.jobs\n",  # an entry point: allowed
        "gpumarket.oracle": "",
        "gpumarket.actions.jobs": "",
    }
    assert violations(modules, {"gpumarket.oracle"}) == [
        "gpumarket.chain.market:1 -> gpumarket.oracle.jobs (layer 2 -> layer 4)",
        "gpumarket.client.jobs:2 -> gpumarket.oracle.service (layer 4 -> layer 4)",
        "gpumarket.oracle.jobs:4 -> gpumarket.actions.jobs (layer 4 -> layer 5)",
    ]
