import os
os.environ.setdefault('SCEGG_PROGRESS', '0')
import pytest, torch
torch.set_num_threads(1)  # tiny models: one thread is fastest, and avoids oversubscription on a shared CPU
import torch.nn.functional as F
from scegg.core import SceggError
from scegg.classify import (per_class_accuracy, harmonic_mean, eszsl, eszsl_predict, eszsl_tuned, eszsl_eval,
                            train_final_classifier, select_paper, select_by_validation)


def test_per_class_accuracy_hand_made_confusion():
    # class 0: 2/4 right, class 1: 0/1, class 2: 3/3 -> (0.5 + 0 + 1) / 3
    y = [0, 0, 0, 0, 1, 2, 2, 2]
    p = [0, 1, 0, 2, 0, 2, 2, 2]
    assert abs(per_class_accuracy(p, y) - 0.5) < 1e-12
    assert abs(per_class_accuracy(p, y, classes=[2]) - 1.0) < 1e-12
    with pytest.raises(SceggError):
        per_class_accuracy([0, 1], [0])


def test_harmonic_mean():
    assert harmonic_mean(0, 0) == 0
    assert abs(harmonic_mean(0.6, 0.4) - 0.48) < 1e-12


def test_eszsl_known_answer():
    g = torch.Generator().manual_seed(1)
    K, D = 8, 30
    att = torch.cat([torch.eye(K), -torch.eye(K), F.normalize(torch.randn(16, K, generator=g), dim=1)])
    W = torch.randn(K, D, generator=g)
    y = torch.arange(len(att)).repeat_interleave(15)
    x = att[y] @ W + 0.05 * torch.randn(len(y), D, generator=g)
    seen, val_u, unseen = torch.arange(16), torch.arange(16, 24), torch.arange(24, 32)
    tr = torch.isin(y, seen)
    best = eszsl_tuned(x[tr], y[tr], x[torch.isin(y, val_u)], y[torch.isin(y, val_u)], att)
    assert best['acc'] > 0.9
    te = torch.isin(y, unseen)
    r = eszsl_eval(x[tr], y[tr], x[tr], y[tr], x[te], y[te], att, seen, unseen, best['gamma'], best['lam'])
    assert r['czsl_acc'] > 0.95
    with pytest.raises(SceggError):
        eszsl(x, y, att, seen)  # labels outside the seen classes


def test_final_classifier_learns_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(5, 20, generator=g)
    y = torch.arange(5).repeat_interleave(40) + 10
    x = (centers[y - 10] + 0.05 * torch.randn(len(y), 20, generator=g)).clamp(0, 1)
    kw = dict(lr=1e-2, epochs=4, batch_size=50, seed=3)
    c1 = train_final_classifier(x, y, torch.arange(10, 15), dict(train=(x, y)), **kw)
    c2 = train_final_classifier(x, y, torch.arange(10, 15), dict(train=(x, y)), **kw)
    assert c1 == c2 and len(c1['train']) == 4 and c1['train'][-1] > 0.9
    with pytest.raises(SceggError):
        train_final_classifier(x, y, torch.arange(10, 12), dict(train=(x, y)), **kw)


def test_selection_protocols():
    curves = [dict(czsl_acc=[.2, .9], U=[.1, .2], S=[.9, .8], H=[.18, .32]),
              dict(czsl_acc=[.5, .6], U=[.5, .4], S=[.5, .6], H=[.5, .48])]
    p = select_paper(curves)
    assert (p['czsl_acc'], p['czsl_gan_epoch'], p['czsl_clf_epoch']) == (.9, 0, 1)
    assert (p['H'], p['U'], p['S'], p['gzsl_gan_epoch'], p['gzsl_clf_epoch']) == (.5, .5, .5, 1, 0)
    assert 'test' in p['protocol']
    assert select_by_validation(curves) == (1, 1, 0)
