"""A layered layout that wraps: nodes top to bottom by depth, in columns that read left to right.

Graphviz lays a deep net out as one strip (VGG-19 top to bottom is 20000 px tall); a page needs
it folded. The graph (a DAG in Caffe's layer order) is placed in ranks, rank = longest path from
an input (a node that only feeds others, like a second Input, sits just above its first
consumer). An edge spanning more than LONG ranks (the label from the data layer to the loss) is
not drawn as a line: the caller notes it on the consumer. Shorter edges that skip ranks get a
thin lane ("dummy" point) in each rank between, as in Sugiyama's method, so lines never cross a
box. In each rank, nodes sit under the mean x of their parents, pushed apart to not overlap.

The ranks are cut into columns only where every line crossing the cut leaves one node (a pool
between VGG blocks, the Concat closing an inception module): that one line is routed down the
gutter, over the top and into the next column. Blocks end after Pooling, Concat and Eltwise
nodes (a block of one rank joins the one before), and columns are filled with whole blocks;
for each number of columns the most even split is found, and the picture closest to `aspect`
(width / height) with the least ragged columns wins. All sizes are in points (1/72 inch), y grows downwards.
"""
import math
from dataclasses import dataclass, field

LONG = 4             # an edge over more ranks than this is noted at its consumer, not drawn
GAP_X, GAP_Y = 14.0, 22.0   # between boxes across and along a column
GUTTER = 44.0        # between columns
LANE = 6.0           # the width of a dummy point (one line's lane)


@dataclass
class Layout:
    pos: dict                    # node id -> (x, y), the centre of its box
    size: dict                   # node id -> (w, h)
    lines: list                  # [(points, kind, (from, to))]: kind "edge" (in a column) or "wrap"
    blocks: list                 # [(x0, y0, x1, y1)]: the background of each block of >= 2 ranks
    width: float = 0.0
    height: float = 0.0
    columns: list = field(default_factory=list)   # [[rank, ...]] per column
    column: dict = field(default_factory=dict)    # node id -> the index of its column


def ranks(ids, edges):
    """rank[id]: longest path from a source; a source that only feeds deeper nodes moves down to
    just above its first consumer."""
    rank = {i: 0 for i in ids}
    preds = {i: [] for i in ids}
    succs = {i: [] for i in ids}
    for a, b in edges:
        preds[b].append(a)
        succs[a].append(b)
    for i in ids:   # Caffe's layer order is a topological order
        if preds[i]:
            rank[i] = max(rank[p] + 1 for p in preds[i])
    for i in ids:
        if not preds[i] and succs[i]:
            rank[i] = max(rank[i], min(rank[s] for s in succs[i]) - 1)
    return rank


def split_long(edges, rank, limit=LONG):
    """(drawn, noted): edges over at most `limit` ranks, and the rest."""
    drawn = [e for e in edges if rank[e[1]] - rank[e[0]] <= limit]
    noted = [e for e in edges if rank[e[1]] - rank[e[0]] > limit]
    return drawn, noted


def arrange(ids, edges, size, rank, block_ends=(), aspect=1.6):
    """The Layout of nodes `ids` (sizes in `size`) joined by `edges` (drawn ones only)."""
    # Unit segments: a long edge becomes a chain through one dummy per rank between.
    segments, chains, size, rank = [], [], dict(size), dict(rank)
    members = {}
    for i in ids:
        members.setdefault(rank[i], []).append(i)
    for a, b in edges:
        chain, prev = [a], a
        for r in range(rank[a] + 1, rank[b]):
            d = f"~{a}~{b}~{r}"
            size[d] = (LANE, 0.0)
            members[r].append(d)
            rank[d] = r
            segments.append((prev, d))
            chain.append(d)
            prev = d
        segments.append((prev, b))
        chain.append(b)
        chains.append(chain)
    n_ranks = max(rank[i] for i in ids) + 1
    for r in range(n_ranks):
        members.setdefault(r, [])
    heights = [max([size[i][1] for i in members[r]] + [0.0]) + GAP_Y for r in range(n_ranks)]
    # Where a column may end: after rank r when all segments crossing down from r leave one node.
    crossing = {r: {a for a, b in segments if rank[a] <= r < rank[b]} for r in range(n_ranks - 1)}
    cuts = {r for r, sources in crossing.items() if len(sources) == 1 and not next(iter(sources)).startswith("~")}
    block_cuts = sorted(r for r in cuts if next(iter(crossing[r])) in block_ends)
    blocks, start = [], 0
    for r in block_cuts + [n_ranks - 1]:
        if r + 1 - start == 1 and blocks:   # a lone pool joins the block before it
            blocks[-1] = (blocks[-1][0], r + 1)
        else:
            blocks.append((start, r + 1))
        start = r + 1
    blocks = [b for b in blocks if b[1] > b[0]]
    preds = {}
    for a, b in segments:
        preds.setdefault(b, []).append(a)
    # Pieces a column is made of: whole blocks, or (when a block is too tall to share out) the
    # runs between any two cuts; each count of columns gets the most even split, and the
    # picture closest to `aspect` is kept.
    finest = [(a, b) for a, b in zip([0] + [r + 1 for r in sorted(cuts)], [r + 1 for r in sorted(cuts)] + [n_ranks])]
    best = None
    for k in range(1, min(len(finest), 16) + 1):
        columns, tallest = _partition(blocks, heights, k)
        fine, fine_tallest = _partition(finest, heights, k)
        if tallest > 1.34 * fine_tallest:
            columns = fine
        layout = _place(columns, members, size, heights, preds, rank)
        # ragged columns waste the page: half a point of score for columns half empty on average
        tall = [sum(heights[r] for r in c) for c in columns]
        ragged = 1 - sum(tall) / len(tall) / max(tall)
        score = abs(math.log(max(layout.width, 1) / max(layout.height, 1) / aspect)) + ragged
        if best is None or score < best[0] - 1e-9:
            best = (score, layout, columns)
    _, layout, columns = best
    layout.columns = columns
    column_of = {r: c for c, col in enumerate(columns) for r in col}
    _route(layout, chains, rank, column_of, size, heights)
    _backgrounds(layout, blocks, members, column_of, size, heights)
    for d in [i for i in layout.pos if i.startswith("~")]:
        del layout.pos[d]
    layout.size = {i: size[i] for i in ids}
    layout.column = {i: column_of[rank[i]] for i in ids}
    return layout


def _partition(pieces, heights, k):
    """The ranks of `pieces` (runs of ranks, in order) in at most k columns, the tallest column
    as low as it can be (the linear partition problem, by dynamic programming)."""
    h = [sum(heights[a:b]) for a, b in pieces]
    n, k = len(h), min(k, len(h))
    prefix = [0.0]
    for v in h:
        prefix.append(prefix[-1] + v)
    # cost[j][i]: the lowest tallest column when the first i pieces fill j columns
    cost = [[math.inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    cost[0][0] = 0.0
    for j in range(1, k + 1):
        for i in range(1, n + 1):
            for m in range(j - 1, i):
                c = max(cost[j - 1][m], prefix[i] - prefix[m])
                if c < cost[j][i] - 1e-9:
                    cost[j][i], cut[j][i] = c, m
    columns, i = [], n
    for j in range(k, 0, -1):
        m = cut[j][i]
        columns.append([r for a, b in pieces[m:i] for r in range(a, b)])
        i = m
    return [c for c in reversed(columns) if c], cost[k][n]


def _place(columns, members, size, heights, preds, rank):
    """x under the parents' mean, per rank; columns side by side; returns a Layout (no lines)."""
    pos, x0, tallest = {}, 0.0, 0.0
    for col in columns:
        local, y = {}, 0.0
        for r in col:
            row = []
            for i in members[r]:
                ps = [local[p] for p in preds.get(i, []) if p in local]
                row.append((sum(ps) / len(ps) if ps else 0.0, i))
            row.sort(key=lambda t: t[0])   # stable: ties keep the layer order
            gaps = [(size[a][0] + size[b][0]) / 2 + GAP_X for (_, a), (_, b) in zip(row, row[1:])]
            for (_, i), x in zip(row, spread([w for w, _ in row], gaps)):
                local[i] = x
                pos[i] = [x, y + heights[r] / 2]
            y += heights[r]
        ids = [i for r in col for i in members[r]]
        left = min([local[i] - size[i][0] / 2 for i in ids] + [0.0])
        right = max([local[i] + size[i][0] / 2 for i in ids] + [0.0])
        for i in ids:
            pos[i][0] += x0 - left
        x0 += right - left + GUTTER
        tallest = max(tallest, y)
    return Layout({i: tuple(p) for i, p in pos.items()}, size, [], [], x0 - GUTTER, tallest)


def spread(wanted, gaps):
    """x_0 <= x_1 <= ... with x_{j+1} - x_j >= gaps[j], as close to `wanted` as can be (least
    squares): shifted by the gaps before them it is isotonic regression, solved by pooling
    adjacent violators. Boxes that need not move stay where their parents are."""
    offset = [0.0]
    for g in gaps:
        offset.append(offset[-1] + g)
    pools = []   # [sum of targets, count]
    for w, o in zip(wanted, offset):
        pools.append([w - o, 1])
        while len(pools) > 1 and pools[-2][0] / pools[-2][1] > pools[-1][0] / pools[-1][1]:
            total, count = pools.pop()
            pools[-1][0] += total
            pools[-1][1] += count
    ys = [t / n for t, n in pools for _ in range(n)]
    return [y + o for y, o in zip(ys, offset)]


def _route(layout, chains, rank, column_of, size, heights):
    """Polylines: within a column through the dummies' lanes, with right-angled bends; between
    columns down the gutter, over the top and into the next column. Several lines into one box
    arrive side by side."""
    pos = layout.pos
    into = {}
    for chain in chains:
        into.setdefault(chain[-1], []).append(chain)
    port = {}
    for target, arriving in into.items():
        arriving.sort(key=lambda c: pos[c[-2]][0])
        n, w = len(arriving), size[target][0]
        step = min(16.0, w / (n + 1))
        for k, chain in enumerate(arriving):
            port[id(chain)] = pos[target][0] + (k - (n - 1) / 2) * step
    right_edge = {}
    for i, (x, _) in pos.items():
        c = column_of[rank[i]]
        right_edge[c] = max(right_edge.get(c, -1e9), x + size[i][0] / 2)
    def low(i):    # the lowest box edge in i's rank, and the highest
        return pos[i][1] + (heights[rank[i]] - GAP_Y) / 2

    def high(i):
        return pos[i][1] - (heights[rank[i]] - GAP_Y) / 2

    for chain in chains:
        a, b = chain[0], chain[-1]
        ax, ay = pos[a][0], pos[a][1] + size[a][1] / 2
        bx, by = port[id(chain)], pos[b][1] - size[b][1] / 2
        if column_of[rank[a]] == column_of[rank[b]]:
            # Orthogonal: a sideways step runs in the middle of the free band between two ranks,
            # a lane (dummy) straight through the height of its rank's boxes.
            points, x, prev = [(ax, ay)], ax, a
            for d in chain[1:]:
                nx = bx if d == b else pos[d][0]
                if abs(nx - x) > 0.01:
                    mid = (low(prev) + high(d)) / 2
                    points += [(x, mid), (nx, mid)]
                if d != b:
                    points += [(nx, high(d)), (nx, low(d))]
                x, prev = nx, d
            points.append((bx, by))
            layout.lines.append((points, "edge", (a, b)))
        else:
            gutter = right_edge[column_of[rank[a]]] + GUTTER / 2
            below = low(a) + GAP_Y / 3
            top = -GAP_Y * 0.6
            layout.lines.append(([(ax, ay), (ax, below), (gutter, below), (gutter, top), (bx, top), (bx, by)], "wrap",
                                 (a, b)))


def _backgrounds(layout, blocks, members, column_of, size, heights):
    """A rectangle behind each block of two ranks or more that lies in one column."""
    pos = layout.pos
    for a, b in blocks:
        by_column = {}
        for r in range(a, b):
            for i in members[r]:
                if not i.startswith("~"):
                    by_column.setdefault(column_of[r], []).append(i)
        if len(by_column) > 1:   # a block cut across columns: shading its parts would mislead
            continue
        for ids in by_column.values():
            if len({pos[i][1] for i in ids}) < 2:
                continue
            pad = 7.0
            layout.blocks.append((min(pos[i][0] - size[i][0] / 2 for i in ids) - pad,
                                  min(pos[i][1] - size[i][1] / 2 for i in ids) - pad,
                                  max(pos[i][0] + size[i][0] / 2 for i in ids) + pad,
                                  max(pos[i][1] + size[i][1] / 2 for i in ids) + pad))
