"""Bring the sidecars of an outputs/<preset> folder up to the current generator without its run cache.

    tools/refresh_sidecars.py outputs/cub-cpu [outputs/cub-mini ...]

For folders whose runs are not at hand (the CUB-224 runs took 8 h), this rewrites only what derives from the
sidecars themselves, as `scegg reproduce` would write it now from the same runs:
- `base_config` / `base_config_hash` without the settings added later at the value older runs had
  (`config.ADDED_LATER`, e.g. `eggn.bf16: false`), as `reproduce.check_table_runs` returns it;
- captions that `reproduce.caption` makes whole (Table 2, Figs. 3-6: from the sidecar's notebook, data set, preset
  and seeds), in the sidecar and in the table's `.md` header;
- the executed notebooks: the checkout's absolute path replaced by `outputs/<preset>` (`reproduce.normalise_notebook`)
  and their HTML rendered again (`nbconvert`, pinned in constraints.txt);
- `MANIFEST.md` and `index.html` (`reproduce.write_manifest`, `reproduce.write_report`).
Numbers, figures and the notebooks' outputs are left as they are.
"""
import json, re, sys
from pathlib import Path

from scegg.core import config_hash, read_json, write_json, atomic_write
from scegg.config import ADDED_LATER_FLAT as OLDER
from scegg.tables import caption
from scegg.reproduce import write_manifest, write_report, normalise_notebook, _html, _not_committed

WHOLE_CAPTIONS = ('table2_ablation', 'fig3_attention', 'fig4_tsne', 'fig5_sensitivity', 'fig6_curves')


def refresh(folder: Path) -> list[str]:
    changed = []
    rep = read_json(folder / 'reproduce.json')
    preset = rep['preset']
    for p in sorted(folder.glob('*.meta.json')):
        if _not_committed(p.name, preset): continue
        m = read_json(p); old = json.dumps(m)
        base = {k: v for k, v in m.get('base_config', {}).items() if not (k in OLDER and OLDER[k] == v)}
        if 'base_config' in m: m['base_config'], m['base_config_hash'] = base, config_hash(base)
        ds = base.get('data_options', {}).get('name') or base.get('dataset')
        pat = re.compile(r"(?:Table|Fig\.) \d on " + re.escape(str(ds)) + r":.*?; reproduction preset '" + re.escape(preset) + r"'\.")
        # the captions `caption()` makes whole (Table 1's sidecars add their own words to theirs, kept as they are)
        new = caption(m['notebook'], ds, preset, m.get('seeds')) if m.get('notebook') in WHOLE_CAPTIONS and ds else None
        if new and pat.match(m.get('caption') or ''):
            m['caption'] = pat.sub(lambda _: new, m['caption'], count=1)
            stem = p.name[:-len('.meta.json')]   # a figure's sidecar may replace its table's (same name): its .md too
            for f in sorted({*(f for f in m.get('files', []) if f.endswith('.md')), f'{stem}.md'}):
                if (folder / f).exists():
                    t = (folder / f).read_text(); u = pat.sub(lambda _: new, t, count=1)
                    if u != t:
                        with atomic_write(folder / f) as fh: fh.write(u)
                        changed.append(f)
        if json.dumps(m) != old: write_json(p, m); changed.append(p.name)
    for nb in sorted((folder / 'notebooks').glob('*.ipynb')):   # the checkout's path out of the executed notebooks
        if _not_committed(nb.name, preset): continue
        at = json.loads(nb.read_text()).get('metadata', {}).get('papermill', {}).get('parameters', {}).get('out_dir')
        before = nb.read_bytes(), nb.with_suffix('.html').read_bytes() if nb.with_suffix('.html').exists() else b''
        normalise_notebook(nb, {at: rep['out']} if at else {}); _html(nb)   # HTML by the current renderer
        if (nb.read_bytes(), nb.with_suffix('.html').read_bytes()) != before: changed.append(f'notebooks/{nb.name}')
    write_manifest(folder); write_report(folder)
    return changed


if __name__ == '__main__':
    for f in sys.argv[1:]:
        print(f, refresh(Path(f)))
