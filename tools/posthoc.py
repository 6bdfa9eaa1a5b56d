"""What the final classifiers gain from each part of their input: post-hoc experiments on a finished run's last generator.

    python tools/posthoc.py RUN_DIR [VIEW ...]       # VIEW: validation (default) and/or test

For the generator of the run's last GAN epoch (no retraining), the CZSL and GZSL final classifiers are trained again,
exactly as `evaluate_epoch` trains them (same synthetic draws, same classifier seed), with one thing changed each:
  default            [x, Dec(x), Dec_h(x)], syn_num and a2 of the run (reproduces the run's last curve point)
  x alone            the features themselves, without Dec's attribute estimate and hidden layer
  Dec(x), Dec_h(x)   without the features (the semantic decoder's outputs only)
  a2 = 0             synthetic features generated without feedback (the run's a2 otherwise)
  syn_num N          N synthetic features per unseen class (the run's 100 otherwise)
Reported per variant: the best CZSL and H over the classifier epochs, on the view's own evaluation splits (validation
view: the validation classes; test view: the test splits, i.e. best-on-test like the paper protocol). Writes
RUN_DIR/posthoc_<view>.json and prints a table.
"""
import json, sys, time
from pathlib import Path
import torch
from scegg.core import write_json
from scegg.pipeline import load_run
from scegg.eggn import synthesize
from scegg.classify import zsl_curves

run_dir = Path(sys.argv[1])
views = sys.argv[2:] or ['validation']
cache = run_dir.parent / 'scen_cache' if (run_dir.parent / 'scen_cache').is_dir() else None   # the reproduction cache
for view in views:
    t0 = time.time()
    r = load_run(run_dir, view=view, scen_cache=cache)
    cfg, data, res, xs = r['cfg'], r['data'], r['eggn'], r['features']
    model, e = res.model.eval(), len(res.history) - 1
    seed = cfg.seed + 1000 * (e + 1)           # the seed of the last epoch's evaluation in `fit_view`
    att = torch.as_tensor(data.att, dtype=torch.float32)
    seen, unseen = torch.as_tensor(data.seen), torch.as_tensor(data.unseen)
    (x_tv, y_tv), (x_ts, y_ts), (x_tu, y_tu) = xs['trainval'], xs['test_seen'], xs['test_unseen']
    dec_only = lambda x: model.transform(x)[:, x.shape[1]:]
    variants = {'default': {}, 'x alone': {'transform': None}, 'Dec(x), Dec_h(x)': {'transform': dec_only},
                'a2 = 0': {'a2': 0.0}, **{f'syn_num {n}': {'syn_num': n} for n in (50, 200, 300) if n != cfg.eggn.syn_num}}
    rows = {}
    for name, v in variants.items():
        n, a2 = v.get('syn_num', cfg.eggn.syn_num), v.get('a2', cfg.eggn.a2)
        with torch.no_grad():
            x_s, y_s = synthesize(model, unseen, n, att, a2, generator=torch.Generator().manual_seed(seed))
            c = zsl_curves(x_s, y_s, x_tv, y_tv, x_ts, y_ts, x_tu, y_tu, seen, unseen, lr=cfg.eggn.classifier_lr,
                           epochs=cfg.eggn.classifier_epochs, batch_size=n,
                           transform=v.get('transform', model.transform), seed=seed)
        i = max(range(len(c['H'])), key=lambda k: c['H'][k])
        rows[name] = {'czsl_acc': max(c['czsl_acc']), 'H': c['H'][i], 'U': c['U'][i], 'S': c['S'][i]}
        print(f"{view:10s} {name:18s} CZSL {100 * rows[name]['czsl_acc']:5.1f}  U {100 * rows[name]['U']:5.1f}  "
              f"S {100 * rows[name]['S']:5.1f}  H {100 * rows[name]['H']:5.1f}", flush=True)
    last = res.history[-1]
    out = {'what': f'post-hoc final-classifier variants on the last generator (GAN epoch {e + 1}) of {run_dir.name}, '
                   f'{view} view; best over classifier epochs on the view\'s evaluation splits',
           'command': f'python tools/posthoc.py {run_dir} {view}', 'method': cfg.method, 'seed': cfg.seed, 'view': view,
           'gan_epoch': e, 'variants': rows,
           'run_last_point': {'czsl_acc': max(last['czsl_acc']), 'H': max(last['H'])}, 'seconds': round(time.time() - t0, 1)}
    write_json(run_dir / f'posthoc_{view}.json', out)
    print('wrote', run_dir / f'posthoc_{view}.json')
