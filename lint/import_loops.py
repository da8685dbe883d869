"""An import-linter contract: no two modules of a package import each other, even through
others (docs/architecture.md).

import-linter's ``acyclic_siblings`` finds loops between the sibling packages of a parent;
this finds them between *modules*, wherever they are: across packages that share a layer (the
console's four), and between a package's face (its ``__init__``) and its own modules. Imports
inside functions count (a loop hidden in a function is still a loop); imports under
``if TYPE_CHECKING:`` do not when the configuration excludes them.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class NoImportLoopsContract(Contract):
    """Configuration: ``package``, the package whose modules must import each other in no loop."""

    type_name = "no_import_loops"

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.package)
        modules = {root, *graph.find_descendants(root)}
        edges = {
            module: sorted(m for m in graph.find_modules_directly_imported_by(module) if m in modules)
            for module in modules
        }
        loops = [_shortest_loop(edges, group) for group in _strongly_connected(edges) if len(group) > 1]
        return ContractCheck(kept=not loops, warnings=None, metadata={"loops": sorted(loops)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for loop in check.metadata["loops"]:
            output.print_error(" -> ".join([*loop, loop[0]]))
            output.new_line()


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, without recursion (a deep package would overflow the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group))
    return groups


def _shortest_loop(edges: dict[str, list[str]], group: list[str]) -> tuple[str, ...]:
    """The shortest loop through the group's first module (breadth first, inside the group)."""
    members = set(group)
    start = group[0]
    paths: dict[str, tuple[str, ...]] = {start: (start,)}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in edges[node]:
                if child == start:
                    return paths[node]
                if child in members and child not in paths:
                    paths[child] = (*paths[node], child)
                    following.append(child)
        frontier = following
    return tuple(group)
