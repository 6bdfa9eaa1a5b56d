"""The command line as a user meets it: `python -m scegg.cli` and the `scegg` script, exit codes and stderr."""
import os, subprocess, sys
from pathlib import Path

import pytest

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.cli import main
import scegg

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, env=None, script=False):
    cmd = [str(Path(sys.executable).parent / 'scegg')] if script else [sys.executable, '-m', 'scegg.cli']
    return subprocess.run([*cmd, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'SCEGG_PROGRESS': '0', **(env or {})})


def test_module_entry_point():
    r = run('--version')
    assert (r.returncode, r.stdout.strip()) == (0, scegg.__version__)


def test_bad_setting_exit_code_and_stderr(tmp_path):
    r = run('train', 'synthetic', '--preset', 'smoke', '--set', 'eggn.nope=1', '--out', str(tmp_path / 'o'))
    assert r.returncode == 2 and r.stdout == ''
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]          # one line
    assert r.stderr.startswith('scegg: error: EGGNConfig has no setting nope') and 'Traceback' not in r.stderr
    assert not (tmp_path / 'o').exists()                                # nothing written for a refused command


@pytest.mark.skipif(not (Path(sys.executable).parent / 'scegg').exists(), reason='the scegg script is not installed')
def test_console_script_missing_root(tmp_path):
    r = run('data', 'check', 'CUB', '--root', str(tmp_path / 'nowhere'), script=True)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f'scegg: error: 1 problem(s) found in CUB under {tmp_path / "nowhere"}'
    assert 'att_splits.mat is missing' in r.stderr


def test_debug_traceback_subprocess(tmp_path):
    r = run('--debug', 'train', 'synthetic', '--preset', 'smoke', '--device', 'cuda:7', '--out', str(tmp_path / 'o'))
    assert r.returncode == 2 and 'Traceback (most recent call last)' in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("scegg: error: device 'cuda:7' was asked for")


def test_argparse_errors_and_help(capsys):
    assert main([]) == 1 and 'usage: scegg' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e: main(['train'])                # missing dataset and --out: argparse's own
    assert e.value.code == 2 and 'required' in capsys.readouterr().err


def test_train_resume_flags_parse():
    from scegg.cli import build_parser
    p = build_parser()
    assert p.parse_args(['train', 'synthetic', '--out', 'x']).resume is True
    assert p.parse_args(['train', 'synthetic', '--out', 'x', '--resume']).resume is True
    assert p.parse_args(['train', 'synthetic', '--out', 'x', '--no-resume']).resume is False
