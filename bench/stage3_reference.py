"""Today's stage-3 step, kept verbatim as the speed reference of `bench/stage3_speed.py`.

Copied from `scegg/eggn.py` at commit 283e5bd (nbs/07_eggn.ipynb: `_optimisers`, `gradient_penalty`,
`update_lambda`, `critic_step`, `generator_step`, `stage3_iteration`) before the stage-3 speed work's optimisations. It runs on
scegg's own modules (`scegg.eggn.EGGN`), whose forward passes are unchanged. Do not edit: it is the 'before'.
"""
from typing import Callable

import torch
import torch.nn.functional as F

from scegg.eggn import EGGN, EGGNConfig, weighted_l1, vae_loss, CriticDraws, GeneratorDraws


def _optimisers(model: EGGN, cfg: EGGNConfig) -> dict:
    "Adam for each module (train_SUN.py:242-251): E with the default betas, the others with (0.5, 0.999)."
    A = torch.optim.Adam
    return dict(encoder=A(model.encoder.parameters(), lr=cfg.lr),
                generator=A(model.generator.parameters(), lr=cfg.lr, betas=(0.5, 0.999)),
                critic=A(model.critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999)),
                decoder=A(model.decoder.parameters(), lr=cfg.dec_lr, betas=(0.5, 0.999)),
                feedback=A(model.feedback.parameters(), lr=cfg.feed_lr, betas=(0.5, 0.999)))

def gradient_penalty(critic, real, fake, att, lam: float, generator: torch.Generator | None = None,
                     alpha: torch.Tensor | None = None): # (B, 1) interpolation weights; drawn U(0, 1) when None
    "(lam * m, m) with m = E[(||grad_x D(x_hat, a)|| - 1)^2] on random interpolates x_hat."
    if alpha is None: alpha = torch.rand(real.shape[0], 1, generator=generator, device=real.device)
    xh = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    out = critic(xh, att)
    grad, = torch.autograd.grad(out, xh, torch.ones_like(out), create_graph=True)
    m = ((grad.norm(2, dim=1) - 1) ** 2).mean()
    return lam * m, m

def update_lambda(lam: float, m: float) -> float:
    "The released code's adaptive penalty weight."
    if m > 1.05: return lam * 1.1
    if m < 1.001: return lam / 1.1
    return lam


def critic_step(model: EGGN, opts: dict, x, y, att, draws: CriticDraws, lam: float, cfg: EGGNConfig,
                a1: float = 0.0) -> dict:
    "One critic step (train_SUN.py:286-342): Dec steps on real features, then D on the WGAN-GP loss. Returns its losses."
    E, G, Dc, Dec = model.encoder, model.generator, model.critic, model.decoder
    xr, a = x[draws.idx], att[y[draws.idx]]
    opts['decoder'].zero_grad(set_to_none=True); opts['critic'].zero_grad(set_to_none=True)
    dec_loss = cfg.recons_weight * weighted_l1(Dec(xr)[0], a)      # r WL1(Dec(x~), a)
    dec_loss.backward()
    opts['decoder'].step()
    with torch.no_grad():
        if cfg.encoded_noise:
            mu, lv = E(xr, a); z = draws.eps * torch.exp(0.5 * lv) + mu
        else: z = draws.eps
        fake = model.generate(z, a, a1)
    # L_D = gammaD (D(fake) - D(x~)) + gammaD * lambda * m
    d_real = cfg.gammaD * Dc(xr, a).mean()
    d_fake = cfg.gammaD * Dc(fake, a).mean()
    gp, m = gradient_penalty(Dc, xr, fake, a, lam, alpha=draws.alpha)
    gp = cfg.gammaD * gp
    d_cost = d_fake - d_real + gp
    d_cost.backward()
    opts['critic'].step()
    return dict(dec_loss=dec_loss.detach(), d_real=d_real.detach(), d_fake=d_fake.detach(), gp=gp.detach(),
                gp_m=m.detach(), wasserstein=(d_real - d_fake).detach(), d_cost=d_cost.detach(), fake=fake)

def generator_step(model: EGGN, opts: dict, x, y, att, draws: GeneratorDraws, cfg: EGGNConfig, a1: float = 0.0,
                   guide: Callable | None = None) -> dict:
    "One generator step (train_SUN.py:352-463): L_G back-propagated once; E, G, (F), (Dec) step. Returns its terms."
    E, Dc, Dec = model.encoder, model.critic, model.decoder
    xr, ys = x[draws.idx], y[draws.idx]
    a = att[ys]
    Dc.requires_grad_(False)
    Dec.requires_grad_(not cfg.freeze_dec)
    for k in ('encoder', 'generator', 'decoder', 'feedback'): opts[k].zero_grad(set_to_none=True)
    mu, lv = E(xr, a)
    z = draws.eps * torch.exp(0.5 * lv) + mu
    recon = model.generate(z, a, a1)                                   # feedback fake in pass 2
    t = dict(vae=vae_loss(recon, xr, mu, lv))                          # L_VAE
    total = t['vae']
    if guide is not None:
        # + 1.0 CE(CLS_g(G(z_E, a)), y_s) + 0.001 CE(CLS_g(G(z, a_u)), y_u), over all C classes
        t['guide_seen'] = F.cross_entropy(guide(recon), ys)
        total = total + cfg.guide_seen * t['guide_seen']
        yu = draws.unseen_labels
        xu = model.generator(draws.unseen_noise, att[yu])              # no feedback (train_SUN.py:408)
        t['guide_unseen'] = F.cross_entropy(guide(xu), yu)
        total = total + cfg.guide_unseen * t['guide_unseen']
    fake = recon if cfg.encoded_noise else model.generate(draws.noise, a, a1)
    t['critic_fake_mean'] = Dc(fake, a).mean()
    total = total - cfg.gammaG * t['critic_fake_mean']                 # - gammaG E[D(G(z_E, a), a)]
    t['recons'] = weighted_l1(Dec(fake)[0], a)
    total = total + cfg.recons_weight * t['recons']                    # + r WL1(Dec(G(z_E, a)), a)
    total.backward()
    opts['encoder'].step(); opts['generator'].step()
    if a1 != 0: opts['feedback'].step()
    if not cfg.freeze_dec: opts['decoder'].step()
    Dc.requires_grad_(True); Dec.requires_grad_(True)
    t['total'] = total
    return {k: v.detach() for k, v in t.items()}

def stage3_iteration(model: EGGN, opts: dict, x, y, att, lam: float, cfg: EGGNConfig,
                     critic_draws: list,       # critic_iters CriticDraws
                     gen_draws: GeneratorDraws,
                     a1: float = 0.0,          # feedback weight of this pass (0 in pass 1)
                     guide: Callable | None = None) -> tuple[float, list, dict]:
    "One generator iteration: the critic steps, the lambda update, the generator step. (new lambda, critic records, generator terms)."
    crit = [critic_step(model, opts, x, y, att, d, lam, cfg, a1) for d in critic_draws]
    lam = update_lambda(lam, sum(float(c['gp_m']) for c in crit) / len(crit))
    gen = generator_step(model, opts, x, y, att, gen_draws, cfg, a1, guide)
    return lam, crit, gen
