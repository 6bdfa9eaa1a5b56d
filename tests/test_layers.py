"Module layering: the import graph of scegg/*.py, from every `from .x import` / `import scegg.x` in each file (lazy ones too)."
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / 'scegg'
_IMPORT = re.compile(r'^\s*(?:from\s+(?:\.|scegg\.)(\w+)\s+import|import\s+scegg\.(\w+))', re.M)
KNOWN_CYCLES = set()   # none: a new import circle fails this test


def import_graph() -> dict:
    mods = {p.stem for p in PKG.glob('*.py')} - {'_modidx', '__init__', '__main__'}
    return {m: {a or b for a, b in _IMPORT.findall((PKG / f'{m}.py').read_text())} & mods - {m} for m in mods}


def cycles(g: dict) -> set:
    "Every import circle, as the tuple of its modules starting from the smallest name."
    found = set()
    def walk(start, node, path):
        for n in g[node]:
            if n == start: found.add(tuple(path))
            elif n not in path and n > start: walk(start, n, path + [n])
    for m in g: walk(m, m, [m])
    return found


def test_cycles_are_found():
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == {('a', 'b', 'c')}
    assert cycles({'a': {'b'}, 'b': set()}) == set()


def test_no_new_import_circle():
    assert cycles(import_graph()) <= KNOWN_CYCLES


def test_loaders_sit_below_the_front_door():
    g = import_graph()
    assert g['data'] <= {'core'}                                     # the dataset object and xlsa17: nothing above
    assert {'datasets', 'fixtures'}.isdisjoint(g['synthetic'] | g['owndata'])
    assert {'data', 'synthetic', 'owndata'} <= g['datasets']


def test_no_product_module_imports_the_fixtures():
    g = import_graph()
    assert [m for m, deps in g.items() if 'fixtures' in deps] == []
    assert 'for tests and examples' in (PKG / 'fixtures.py').read_text().split('"""')[1]
