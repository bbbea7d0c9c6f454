"""Dependency cycles among processes, found once per strongly connected component."""

from __future__ import annotations

from collections.abc import Mapping

from caproni_tasks.config.model import ProcessRef

__all__ = ["cycles"]


def cycles(graph: Mapping[ProcessRef, tuple[ProcessRef, ...]]) -> list[list[ProcessRef]]:
    """One cycle per strongly connected component that has one (Tarjan), in file order."""
    index: dict[ProcessRef, int] = {}
    low: dict[ProcessRef, int] = {}
    stack: list[ProcessRef] = []
    on_stack: set[ProcessRef] = set()
    components: list[list[ProcessRef]] = []

    def visit(node: ProcessRef) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            components.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    order = {node: i for i, node in enumerate(graph)}
    found: list[list[ProcessRef]] = []
    for component in components:
        members = set(component)
        start = min(component, key=lambda n: order.get(n, len(order)))
        if len(component) == 1 and start not in graph.get(start, ()):
            continue
        found.append(_walk_cycle(start, members, graph))
    found.sort(key=lambda c: order.get(c[0], len(order)))
    return found


def _walk_cycle(
    start: ProcessRef, members: set[ProcessRef], graph: Mapping[ProcessRef, tuple[ProcessRef, ...]]
) -> list[ProcessRef]:
    """A path inside one component from ``start`` back to it (breadth-first: shortest)."""
    previous: dict[ProcessRef, ProcessRef] = {}
    frontier = [start]
    while frontier:
        following: list[ProcessRef] = []
        for node in frontier:
            for nxt in graph.get(node, ()):
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path))
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start]
