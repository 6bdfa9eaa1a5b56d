import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('SCEGG_PROGRESS', '0')
# tests keep generated data inside the checkout (git-ignored data/), never in the user's ~/.cache/scegg
os.environ.setdefault('SCEGG_DATA', str(ROOT / 'data'))


def shared_data() -> Path:
    "The real data folder (../shared/data beside the repo), or $SCEGG_SHARED_DATA."
    env = os.environ.get('SCEGG_SHARED_DATA')
    return Path(env) if env else ROOT.parent / 'shared' / 'data'


@pytest.fixture
def shared():
    p = shared_data()
    if not p.is_dir():
        pytest.skip(f'real data not found at {p} (set SCEGG_SHARED_DATA); these tests need ../shared/data')
    return p


# Shared by the user-facing tests (test_user_safety, test_clean_rebuilds): the CLI run in this process, its one-line errors.
def cli(capsys, *argv):
    "Run `scegg ARGV` in this process: (exit code, stdout, stderr)."
    from scegg.cli import main
    code = main([str(a) for a in argv])
    o = capsys.readouterr()
    return code, o.out, o.err


def one_line_error(err: str) -> str:
    "The error line of a refused command, checked to be one line with no traceback."
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('scegg: error: ') and 'Traceback' not in err, err
    return lines[0]


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    "A fresh SCEGG_DATA for one test."
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    return tmp_path / 'data'


def own_cub_set(base) -> dict:
    "A CUB-mini-layout folder of 6 classes under `base` (4 seen, 2 unseen) with its class lists; attributes beside it."
    from scegg.fixtures import make_cub_fixture, make_cub_subset
    cub = make_cub_fixture(base / 'cub', n_classes=6, per_class=6, image_size=32)
    names = [l.split()[1] for l in (cub / 'CUB_200_2011' / 'classes.txt').read_text().splitlines()]
    mine = make_cub_subset(cub, base / 'mine', names, copy=True)
    (base / 'seen.txt').write_text('\n'.join(names[:4]) + '\n')
    (base / 'unseen.txt').write_text('\n'.join(names[4:]) + '\n')
    return {'root': mine, 'cub': cub, 'seen': base / 'seen.txt', 'unseen': base / 'unseen.txt', 'names': names, 'base': base}
