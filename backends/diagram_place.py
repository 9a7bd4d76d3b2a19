"""Placing one level of a diagram (a group's direct children) in a long left-to-right strip:
layers, dummies, order within each layer, port heights and heights (steps 2 to 5 of
diagram_layout's docstring). `Order` does not depend on any size, so it is computed once a
level and kept while the layout tries row widths; `place_heights` does, and runs per try.
diagram_route then cuts the strip into rows and draws the wires.
"""
from __future__ import annotations

from typing import Optional

import networkx as nx

NODE_GAP = 14.0  # between two slots of a column
DUMMY_H = 12.0


def kind(n, boxes: dict) -> str:
    """"IN" / "OUT" (a port on the fence), "D" (a dummy), a box's kind, or "group"."""
    if isinstance(n, tuple):
        return n[0]
    return boxes[n].kind if n in boxes else "group"


class Order:
    """Layers, dummy slots and the order within each layer of one level (`_Level`)."""

    def __init__(self, lv, boxes: dict) -> None:
        self.lv, self.boxes = lv, boxes
        self.layer = self.layers()
        self.chains = self.dummies()
        self.order = self.ordering()

    def layers(self) -> dict:
        lv = self.lv
        g = nx.DiGraph()
        g.add_nodes_from(lv.nodes)
        for (s, _, t, _) in lv.edges:
            if s != t:
                g.add_edge(s, t)
        if not nx.is_directed_acyclic_graph(g):  # a collapse folded a cycle: keep the forward edges
            g.remove_edges_from([(s, t) for s, t in list(g.edges) if lv.rank[s] >= lv.rank[t]])
            lv.edges = {k: v for k, v in lv.edges.items() if g.has_edge(k[0], k[2])}
        layer: dict = {}
        for n in nx.lexicographical_topological_sort(g, key=lambda n: lv.rank[n]):
            layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
        for n in sorted(g, key=lambda n: -lv.rank[n]):  # sources move next to their first reader
            if g.in_degree(n) == 0 and g.out_degree(n) and not kind(n, self.boxes) in ("IN", "input"):
                layer[n] = max(layer[n], min(layer[s] for s in g.successors(n)) - 1)
        if any(kind(n, self.boxes) == "input" for n in g):  # inputs alone in the first column
            for n in g:
                layer[n] += kind(n, self.boxes) != "input"
        last = lambda n: kind(n, self.boxes) in ("OUT", "output")
        inner = [layer[n] for n in g if not last(n)]
        end = max(inner, default=-1) + 1
        for n in g:
            if last(n):
                layer[n] = end
        return layer

    def dummies(self) -> dict:
        """Each edge -> the nodes it passes through, first to last; dummies are shared by the
        edges from one output."""
        chains = {}
        for key in self.lv.edges:
            s, sp, t, _ = key
            path = [s]
            for k in range(self.layer[s] + 1, self.layer[t]):
                d = ("D", s, sp, k)
                if d not in self.layer:
                    self.layer[d] = k
                    self.lv.rank[d] = self.lv.rank[s] + 0.5
                path.append(d)
            path.append(t)
            chains[key] = path
        return chains

    def ordering(self) -> list[list]:
        n_layers = max(self.layer.values(), default=-1) + 1
        layers: list[list] = [[] for _ in range(n_layers)]
        for n in sorted(self.layer, key=lambda n: (self.lv.rank[n], repr(n))):
            layers[self.layer[n]].append(n)
        preds: dict = {n: set() for n in self.layer}
        succs: dict = {n: set() for n in self.layer}
        for path in self.chains.values():
            for u, v in zip(path, path[1:]):
                succs[u].add(v)
                preds[v].add(u)
        pos = {n: i for layer in layers for i, n in enumerate(layer)}
        for sweep in range(4):
            down = sweep % 2 == 0
            seq = range(1, n_layers) if down else range(n_layers - 2, -1, -1)
            for li in seq:
                nbrs = preds if down else succs
                def bary(n):
                    ps = [pos[m] for m in nbrs[n]]
                    return (sum(ps) / len(ps) if ps else pos[n], pos[n])
                layers[li].sort(key=bary)
                for i, n in enumerate(layers[li]):
                    pos[n] = i
        self.pos = pos
        return layers


class Heights:
    """Port heights (relative to each node's top) and node tops, for given node sizes."""

    def __init__(self, o: Order, size: dict, children: dict, top: float) -> None:
        self.o, self.size, self.children = o, size, children
        self.out_off: dict = {}
        self.in_off: dict = {}
        self.ports()
        self.coordinates(top)

    def ports(self) -> None:
        outs: dict = {}
        ins: dict = {}
        for (s, sp, t, tp), path in self.o.chains.items():
            outs.setdefault(s, set()).add(sp)
            ins.setdefault(t, {})[tp] = (self.o.pos[path[-2]], repr(sp))
        ch = self.children
        for n, ps in outs.items():
            self._spread(n, sorted(ps, key=repr), self.out_off, ch[n].out_y if n in ch else None)
        for n, ps in ins.items():
            self._spread(n, sorted(ps, key=lambda p: (ps[p], repr(p))), self.in_off, ch[n].in_y if n in ch else None)

    def _spread(self, n, ports: list, off: dict, fixed: Optional[dict]) -> None:
        h = self.size[n][1]
        for i, p in enumerate(ports):
            off[(n, p)] = fixed[p[1]] if fixed is not None else h * (i + 1) / (len(ports) + 1)

    def port(self, n, p, out: bool) -> float:
        return (self.out_off if out else self.in_off).get((n, p), self.size[n][1] / 2)

    def coordinates(self, top: float) -> None:
        order = self.o.order
        self.y: dict = {}
        for layer in order:
            y = top
            for n in layer:
                self.y[n] = y
                y += self.size[n][1] + NODE_GAP
        in_edges: dict = {}
        out_edges: dict = {}
        for (s, sp, t, tp), path in self.o.chains.items():
            for i, (u, v) in enumerate(zip(path, path[1:])):
                up = sp if i == 0 else None
                vp = tp if i == len(path) - 2 else None
                in_edges.setdefault(v, []).append((u, up, vp))
                out_edges.setdefault(u, []).append((v, vp, up))
        n = len(order)
        sweeps = [(li, True) for li in range(1, n)] + [(li, False) for li in range(n - 2, -1, -1)] + \
            [(li, True) for li in range(1, n)]
        for li, forward in sweeps:
            self._align(order[li], in_edges if forward else out_edges, forward)
        shift = top - min(self.y.values(), default=top)
        for n in self.y:
            self.y[n] += shift

    def _align(self, layer: list, edges: dict, forward: bool) -> None:
        """Move the layer's nodes (order kept, NODE_GAP apart) as near as possible to the
        mean height their edges' other ends ask for: pool adjacent violators."""
        want = []
        for n in layer:
            es = edges.get(n, [])
            if forward:
                ask = [self.y[m] + self.port(m, mp, True) - self.port(n, np_, False) for m, mp, np_ in es]
            else:
                ask = [self.y[m] + self.port(m, mp, False) - self.port(n, np_, True) for m, mp, np_ in es]
            want.append(sum(ask) / len(ask) if ask else self.y[n])
        offs, c = [], 0.0
        for n in layer:
            offs.append(c)
            c += self.size[n][1] + NODE_GAP
        blocks: list[list[float]] = []  # [mean, count]
        for wv, o in zip(want, offs):
            blocks.append([wv - o, 1])
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                m2, c2 = blocks.pop()
                m1, c1 = blocks.pop()
                blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
        i = 0
        for mean, count in blocks:
            for _ in range(count):
                self.y[layer[i]] = mean + offs[i]
                i += 1
