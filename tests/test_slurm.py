"""`scegg reproduce --executor slurm` against a real Slurm: a single-node cluster (munge, slurmctld, slurmd from
Debian's packages, installed with apt-get if missing) started in the foreground in a temporary folder for this
module, stopped at its end. Skipped, with the reason, where Slurm cannot start here.

Time on the 2-core build machine: see test_reproduce_on_slurm's docstring."""
import json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCEGG = str(Path(sys.executable).with_name('scegg'))
DAEMONS = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'scontrol', 'scancel')


def _which(name):
    return shutil.which(name) or next((p for p in (f'/usr/sbin/{name}', f'/usr/bin/{name}', f'/sbin/{name}') if os.access(p, os.X_OK)), None)


def _install() -> str:
    "'' once Debian's Slurm and munge are installed, else why not."
    if all(_which(d) for d in DAEMONS): return ''
    if sys.platform != 'linux' or not shutil.which('apt-get'): return 'Slurm is not installed and there is no apt-get here'
    if os.geteuid() != 0: return 'Slurm is not installed and installing it (apt-get) needs root'
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'slurm-wlm', 'munge']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:   # a clean machine has no package lists yet
        subprocess.run(['apt-get', 'update', '-q'], capture_output=True, text=True, env=env, timeout=600)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0: return f'apt-get install slurm-wlm munge failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}'
    return '' if all(_which(d) for d in DAEMONS) else 'slurm-wlm installed, but its programs are not on the PATH'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


class Cluster:
    "munged, slurmctld and slurmd of a one-node cluster, each a foreground child process, configured in `folder`."
    def __init__(self, folder: Path):
        self.dir, self.procs = folder, []
        self.env = {**os.environ, 'SLURM_CONF': str(folder / 'slurm.conf')}

    def start(self) -> str:
        d, host = self.dir, socket.gethostname().split('.')[0]
        for sub in ('munge', 'state', 'spool', 'log'): (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / 'munge', 0o700)
        (d / 'munge' / 'munge.key').write_bytes(os.urandom(1024)); os.chmod(d / 'munge' / 'munge.key', 0o400)
        sock = d / 'munge' / 'socket'
        self._spawn([_which('munged'), '-F', '--force', f'--key-file={d}/munge/munge.key', f'--socket={sock}',
                     f'--pid-file={d}/munge/pid', f'--seed-file={d}/munge/seed', f'--log-file={d}/log/munged.log'], 'munged')
        cpus = os.cpu_count() or 1
        (d / 'slurm.conf').write_text(f"""ClusterName=scegg-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=3600
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        for _ in range(50):
            if sock.exists(): break
            time.sleep(0.1)
        self._spawn([_which('slurmctld'), '-D', '-f', str(d / 'slurm.conf')], 'slurmctld')
        self._spawn([_which('slurmd'), '-D', '-f', str(d / 'slurm.conf')], 'slurmd')
        t0 = time.time()
        while time.time() - t0 < 60:
            r = subprocess.run([_which('sinfo'), '-h', '-o', '%T'], capture_output=True, text=True, env=self.env)
            if r.stdout.strip() in ('idle', 'mixed', 'allocated'): return ''
            if any(p.poll() is not None for p in self.procs): break
            time.sleep(0.5)
        logs = ' | '.join(f'{f.name}: {" ".join(f.read_text().split()[-30:])}' for f in sorted((d / 'log').glob('*.out')))
        return f'the single-node Slurm did not come up within 60 s ({logs})'

    def _spawn(self, cmd, name):
        out = open(self.dir / 'log' / f'{name}.out', 'w')
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def stop(self):
        squeue = lambda: subprocess.run([_which('squeue'), '-h', '-o', '%i'], capture_output=True, text=True,
                                        env=self.env, timeout=30).stdout.split()
        try:
            ids, t0 = squeue(), time.time()
            if ids: subprocess.run([_which('scancel'), *ids], env=self.env, timeout=30)
            while ids and time.time() - t0 < 30: time.sleep(0.5); ids = squeue()   # let slurmd end their steps
        except (OSError, subprocess.SubprocessError): pass
        for p in reversed(self.procs):   # slurmd, slurmctld, munged: each one this module started
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try: p.wait(20)
                except subprocess.TimeoutExpired: p.kill(); p.wait()
        # job steps (and their jobs) outlive slurmd by design: end those of this cluster, whose environment names its
        # slurm.conf (this test process's own environment does not)
        mark = f"SLURM_CONF={self.env['SLURM_CONF']}".encode()
        for proc in Path('/proc').glob('[0-9]*'):
            try:
                if int(proc.name) != os.getpid() and mark in proc.joinpath('environ').read_bytes().split(b'\0'):
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError): pass


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    why = _install()
    if why: pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp('slurm'))
    try:
        why = c.start()
        if why: pytest.skip(why)
        yield c
    finally: c.stop()


def _scegg(args, env, **kw):
    # SIGINT back to its default in the child: a test run started in the background (nohup, CI without job control)
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt for the Ctrl-C the test sends
    return subprocess.Popen([SCEGG, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


SLOW_VIEW_HOOK = """
import os, sys, time
if os.environ.get('SLURM_JOB_ID'):   # only inside a Slurm job, not in scegg reproduce itself
    import scegg.pipeline as _p
    _fit_view = _p.fit_view
    def fit_view(*a, **k):
        time.sleep(4)
        return _fit_view(*a, **k)
    _p.fit_view = fit_view
"""


def _tables(folder: Path) -> dict:
    return {f.name: f.read_bytes() for f in sorted(folder.glob('*')) if f.suffix in ('.csv', '.md') and f.name != 'MANIFEST.md'}


def test_reproduce_on_slurm(slurm, tmp_path):
    """The smoke reproduction through Slurm: one job per run (10), a second submission refused while the first waits, one
    job killed mid-run (scancel) and named with its log, the rerun submitting only that run (and, interrupted, leaving
    its job running; the next rerun waits for that job), tables equal to a local rebuild. About 4 min on the 2-core
    build machine (install excluded), most of it the 10 + 1 runs, the local rebuild and two renderings."""
    env = {**slurm.env, 'SCEGG_SLURM_POLL': '1', 'OMP_NUM_THREADS': '1', 'SCEGG_PROGRESS': '0'}
    # A smoke run takes a few seconds on an idle machine, too short to be caught between 'started' and 'finished' by
    # polling squeue. The jobs (they inherit this environment through sbatch) pause 4 s before each view's training
    # through a sitecustomize hook of this test alone: timing only, no number changes (the tables are compared below).
    hook = tmp_path / 'hook'; hook.mkdir()
    (hook / 'sitecustomize.py').write_text(SLOW_VIEW_HOOK)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(hook), os.environ.get('PYTHONPATH')]))
    out = tmp_path / 'o'
    cmd = ['reproduce', '--preset', 'smoke', '--executor', 'slurm', '--out', out, '--cpus-per-run', '1', '--time', '30',
           '--sbatch=--job-name=scegg-test']
    a = _scegg(cmd, env)
    book = out / 'smoke' / 'slurm' / 'jobs.json'
    runs = out / 'smoke' / 'runs'
    killed, t0 = None, time.time()
    try:
        # a second submission of the same reproduction while the first waits: refused, naming the first
        while not book.exists() and a.poll() is None and time.time() - t0 < 300: time.sleep(0.2)
        b = _scegg(cmd, env); b_out = b.communicate(timeout=300)[0]
        assert b.returncode == 2 and f'in use by pid {a.pid}' in b_out, b_out
        # kill one job while it trains (a job that finishes before scancel takes effect does not count: try another)
        squeue = lambda: dict(l.split() for l in subprocess.run(['squeue', '-h', '-o', '%i %T'], capture_output=True,
                                                                 text=True, env=env).stdout.splitlines() if l.strip())
        tried = set()
        while killed is None and a.poll() is None and time.time() - t0 < 600:
            jobs, states = json.loads(book.read_text()), squeue()
            for h, j in jobs.items():
                if j['job_id'] in tried or states.get(j['job_id']) != 'RUNNING': continue
                if (runs / h / 'events.jsonl').exists() and not (runs / h / 'results.json').exists():
                    subprocess.run(['scancel', j['job_id']], check=True, env=env); tried.add(j['job_id'])
                    while squeue().get(j['job_id']) in ('RUNNING', 'COMPLETING'): time.sleep(0.1)
                    if not (runs / h / 'results.json').exists(): killed = (h, j['job_id'])
                    break
            time.sleep(0.05)
        a_out = a.communicate(timeout=900)[0]
    finally:
        if a.poll() is None: a.kill()
    assert killed, 'no job was caught running: ' + a_out[-3000:]
    h, jid = killed
    assert a.returncode == 2, a_out
    assert f'FAILED job {jid} (CANCELLED' in a_out, a_out
    log = next(l for l in a_out.splitlines() if f'FAILED job {jid}' in l).split('; log ')[1].split(';')[0]
    assert Path(log).exists() and jid in Path(log).name
    assert 'run(s) failed' in a_out and 'again' in a_out   # the one-line error says what to do
    first = json.loads(book.read_text())
    assert len(first) == 10 and not (runs / h / 'results.json').exists()
    assert sum((runs / k / 'results.json').exists() for k in first) == 9
    assert not (out / 'smoke' / 'table1.md').exists(), 'no table rendered while a run is missing'

    # the rerun submits only the killed run; interrupted (Ctrl-C, a logout) once it has, it leaves that job running
    c = _scegg(cmd, env)
    c_out = ''
    for line in c.stdout:
        c_out += line
        if 'submitted job' in line: c.send_signal(signal.SIGINT); break
    c_out += c.communicate(timeout=300)[0]
    assert c.returncode == 130 and 'keep running' in c_out, c_out
    assert '10 runs, 9 finished in the run cache' in c_out and '1 to train' in c_out, c_out
    assert c_out.count('submitted job') == 1 and f'run {h}' in next(l for l in c_out.splitlines() if 'submitted job' in l)
    again = json.loads(book.read_text())
    assert {k: v for k, v in again.items() if k != h} == {k: v for k, v in first.items() if k != h}
    assert again[h]['job_id'] != jid
    # ... and the same command again waits for that job instead of submitting the run once more, then renders
    d = _scegg(cmd, env); d_out = d.communicate(timeout=900)[0]
    assert d.returncode == 0, d_out
    assert 'submitted job' not in d_out and json.loads(book.read_text()) == again
    assert f"job {again[h]['job_id']} still" in d_out or '0 to train' in d_out, d_out
    starts = [e for e in map(json.loads, (runs / h / 'events.jsonl').read_text().splitlines()) if e.get('stage') == 'run' and 'done' not in e]
    assert len(starts) == 2, 'the resubmitted run continued in its own folder'

    loc = _scegg(['reproduce', '--preset', 'smoke', '--out', tmp_path / 'local'], {**env, 'SLURM_CONF': '/nonexistent'})
    l_out = loc.communicate(timeout=900)[0]
    assert loc.returncode == 0, l_out
    mine, ref = _tables(out / 'smoke'), _tables(tmp_path / 'local' / 'smoke')
    assert len(ref) >= 20 and mine.keys() == ref.keys()
    assert [k for k in ref if mine[k] != ref[k]] == []
