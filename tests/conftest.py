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
