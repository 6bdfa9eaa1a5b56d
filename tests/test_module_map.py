"The module map of DEVELOPING.md holds: the run's and the reproduction's modules import downward only, tables need no model, lab scripts use public names."
import ast, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ('config', 'runs', 'pipeline', 'tables', 'figures', 'experiment', 'cluster', 'reproduce', 'predict', 'cli')

def _imports(mod: str) -> set:
    "The scegg modules `mod` imports, at the top or inside a function."
    tree = ast.parse((ROOT / 'scegg' / f'{mod}.py').read_text())
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            name = ('scegg.' if n.level else '') + (n.module or '')
            if name.startswith('scegg.'): out.add(name.split('.')[1])
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('scegg.')}
    return out

def test_no_module_imports_one_that_imports_it_back():
    graph = {m: _imports(m) for m in OURS}
    def reaches(a, b, seen=()):
        return any(x == b or (x in graph and x not in seen and reaches(x, b, (*seen, x))) for x in graph[a])
    cycles = [m for m in OURS if reaches(m, m)]
    assert not cycles, f'import cycles through {cycles}'

def test_rooms():
    assert _imports('tables') <= {'core', 'config'}                      # pandas over results: no model, no run
    assert 'torch' not in (ROOT / 'scegg' / 'tables.py').read_text()
    assert _imports('config') <= {'core', 'data', 'datasets', 'features', 'scen', 'eggn'}
    assert _imports('runs') <= {'core', 'config', 'scen', 'eggn'}
    assert not _imports('pipeline') & {'tables', 'figures', 'experiment', 'reproduce', 'cluster'}
    assert 'reproduce' not in _imports('cluster')
    assert max(len((ROOT / 'scegg' / f'{m}.py').read_text().splitlines()) for m in OURS) < 550

def test_lab_scripts_import_public_names_only():
    for p in sorted((ROOT / 'lab').glob('*.py')):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or '').startswith('scegg'):
                assert not [a.name for a in n.names if a.name.startswith('_')], p.name
