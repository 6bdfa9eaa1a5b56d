"""Convert between a percent-format draft (`# %%` cells) and an nbdev notebook.

Notebooks in `nbs/` are the source of truth; this helper only makes writing them from a text editor
practical.  Usage:

    python tools/nb.py to-nb draft.py nbs/01_data.ipynb      # draft -> notebook (outputs empty)
    python tools/nb.py to-py nbs/01_data.ipynb draft.py      # notebook -> draft, to edit it again

Cell markers: `# %%` (code), `# %% [markdown]` (markdown; lines start with `# `),
`# %% tags=["parameters"]` (code cell with tags).
"""
import json, re, sys
from pathlib import Path

_MARK = re.compile(r'^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$')


def py_to_cells(text):
    cells, cur = [], None
    for line in text.splitlines():
        m = _MARK.match(line)
        if m:
            if cur is not None: cells.append(cur)
            cur = dict(md=bool(m['md']), tags=json.loads(m['tags']) if m['tags'] else [], lines=[])
            continue
        if cur is None:
            if not line.strip(): continue
            cur = dict(md=False, tags=[], lines=[])
        cur['lines'].append(line)
    if cur is not None: cells.append(cur)
    out = []
    for c in cells:
        lines = c['lines']
        while lines and not lines[-1].strip(): lines.pop()
        while lines and not lines[0].strip(): lines.pop(0)
        if c['md']:
            lines = [l[2:] if l.startswith('# ') else (l[1:] if l.startswith('#') else l) for l in lines]
        src = '\n'.join(lines)
        meta = {'tags': c['tags']} if c['tags'] else {}
        if c['md']:
            out.append(dict(cell_type='markdown', metadata=meta, source=src))
        else:
            out.append(dict(cell_type='code', execution_count=None, metadata=meta, outputs=[], source=src))
    return out


def to_nb(src, dst):
    cells = py_to_cells(Path(src).read_text())
    for c in cells:
        s = c['source']
        c['source'] = [l + '\n' for l in s.split('\n')[:-1]] + [s.split('\n')[-1]] if s else []
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    for i, c in enumerate(nb['cells']): c['id'] = f'c{i:03d}'
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')


def to_py(src, dst):
    nb = json.loads(Path(src).read_text())
    parts = []
    for c in nb['cells']:
        s = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        tags = c.get('metadata', {}).get('tags')
        t = f' tags={json.dumps(tags)}' if tags else ''
        if c['cell_type'] == 'markdown':
            parts.append(f'# %% [markdown]{t}\n' + '\n'.join(('# ' + l) if l else '#' for l in s.split('\n')))
        else:
            parts.append(f'# %%{t}\n' + s)
    Path(dst).write_text('\n\n'.join(parts) + '\n')


if __name__ == '__main__':
    cmd, a, b = sys.argv[1:4]
    {'to-nb': to_nb, 'to-py': to_py}[cmd](a, b)
