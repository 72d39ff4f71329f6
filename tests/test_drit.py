"""DRIT: shapes, learning, the mode-seeking / latent-regression gradients, save/load, resume, safety."""

import pickle

import numpy as np
import pytest
import torch

from vdwstack.drit.networks import Drit, DritArchitecture, InstanceNorm, ReflectConv2d, ReflectionPad
from vdwstack.drit.data import DomainSampler, StyleReference, random_crop
from vdwstack.drit.losses import content_preservation, lattice_consistency, mode_seeking
from vdwstack.core.torch_utils import cpu_has_native_bf16, load_weights_only
from vdwstack.drit.training import DritConfig, DritTrainer, export_translator, load_translator, train

ARCH = DritArchitecture(nf=8, nz=4, n_res=1, disc_scales=2, disc_layers=2)


def _lattice(n=48, shift=(0.0, 0.0), period=6.0):
    y, x = np.mgrid[0:n, 0:n].astype(float)
    return (np.cos(2 * np.pi * (x - shift[0]) / period) * np.cos(2 * np.pi * (y - shift[1]) / period)).astype(np.float32)


def _sampler(crop=32):
    rng = np.random.default_rng(0)
    sims = np.stack([_lattice(48, rng.uniform(0, 6, 2)) for _ in range(6)])
    exp = _lattice(96, (1.0, 2.0)) * 0.5 + 0.3 * rng.normal(size=(96, 96)).astype(np.float32)
    return DomainSampler(sims, [StyleReference("r", exp, 0.1, "sheet")], crop)


def test_shapes_and_dtypes():
    m = Drit(ARCH)
    x = torch.rand(3, 1, 32, 40) * 2 - 1
    c = m.enc_c(x, "A")
    assert c.shape == (3, ARCH.nf * 4, 8, 10) and c.dtype == torch.float32
    mu, lv = m.enc_a_B(x)
    assert mu.shape == lv.shape == (3, ARCH.nz)
    y = m.gen_B(c, mu)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert [o.shape[-1] for o in m.dis_A(x)] == [10, 5]  # two stride-2 convs per scale
    assert m.translate(x).shape == x.shape
    # Both domains' content paths end in the same (shared) block.
    for domain in ("A", "B"):
        m.zero_grad()
        m.enc_c(x, domain).sum().backward()
        assert all(p.grad is not None for p in m.enc_c.shared.parameters())
    m.zero_grad()
    m.enc_c(x, "A").sum().backward()
    assert all(p.grad is None for p in m.enc_c.stem_b.parameters())


def test_mode_seeking_and_latent_regression_reach_the_weights():
    """Unlike the paper's public code, these two losses are not detached: they train the networks."""
    m = Drit(ARCH)
    a = torch.rand(2, 1, 32, 32) * 2 - 1
    c = m.enc_c(a, "A")
    z1, z2 = torch.randn(2, ARCH.nz), torch.randn(2, ARCH.nz)
    loss = mode_seeking(m.gen_B(c, z1), m.gen_B(c, z2), z1, z2)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.gen_B.parameters())
    m.zero_grad()
    mu, _ = m.enc_a_B(m.gen_B(m.enc_c(a, "A"), z1))
    torch.nn.functional.l1_loss(mu, z1).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.enc_a_B.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.gen_B.parameters())


def test_enhancement_losses_see_content_changes():
    src = torch.from_numpy(_lattice(64))[None, None]
    same_content = 0.5 * src + 0.2  # contrast/brightness change only
    shifted = torch.from_numpy(_lattice(64, (1.5, 0.0)))[None, None]
    assert content_preservation(same_content, src, 1.0) < 1e-3
    assert content_preservation(shifted, src, 1.0) > 0.3
    assert lattice_consistency(same_content, src) < 1e-3
    assert lattice_consistency(shifted, src) > 0.3  # a shift changes the Bragg phases


def test_few_steps_reduce_reconstruction_loss():
    torch.manual_seed(0)
    cfg = DritConfig(crop_px=32, batch_size=2, lr=1e-3, architecture=ARCH)
    tr = DritTrainer(cfg, 0.1, torch.device("cpu"))
    sampler = _sampler()
    rng = np.random.default_rng(1)
    a, b, _ = sampler.sample(2, rng)
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    first = tr.step(a, b)["self_recon"]
    for _ in range(25):
        last = tr.step(a, b)["self_recon"]
    assert last < 0.7 * first


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_steps_train_in_channels_last_and_keep_the_guard_losses_fp32():
    torch.manual_seed(0)
    cfg = DritConfig(crop_px=32, batch_size=2, lr=1e-3, architecture=ARCH, mixed_precision=True, channels_last=True)
    tr = DritTrainer(cfg, 0.1, torch.device("cpu"))
    assert tr.amp
    a, b, _ = _sampler().sample(2, np.random.default_rng(1))
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    first = tr.step(a, b)
    for _ in range(25):
        last = tr.step(a, b)
    assert all(np.isfinite(v) for v in last.values())
    assert last["self_recon"] < 0.8 * first["self_recon"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.rand(1, 1, 32, 32).to(torch.bfloat16)
        assert content_preservation(x, x.float(), 1.0).dtype == torch.float32
        assert lattice_consistency(x, x.float()).dtype == torch.float32


def test_padding_and_norm_layers_equal_torchs_and_keep_bf16_channels_last_under_autocast():
    """The padding and norm layers replaced for speed compute what nn.ReflectionPad2d,
    Conv2d(padding_mode="reflect") and nn.InstanceNorm2d compute, and under CPU autocast they
    neither cast a bf16 activation to fp32 nor drop channels-last (each would copy the whole tensor)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 11, 13) * 3 + 1
    assert torch.equal(ReflectionPad(2)(x), torch.nn.ReflectionPad2d(2)(x))
    xcl = x.contiguous(memory_format=torch.channels_last)
    y = InstanceNorm(6)(xcl)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, torch.nn.InstanceNorm2d(6)(x), atol=1e-5)
    assert torch.equal(InstanceNorm(6)(x), torch.nn.InstanceNorm2d(6)(x))  # contiguous: torch's own
    ours, theirs = ReflectConv2d(6, 4, 3, padding=1), torch.nn.Conv2d(6, 4, 3, padding=1, padding_mode="reflect")
    theirs.load_state_dict(ours.state_dict())
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    if not cpu_has_native_bf16():
        return
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for layer in (ReflectionPad(1), InstanceNorm(6)):
            y = layer(xb)
            assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last), layer
        # bf16 rounding of the normalised values only (|y| ~ 1, bf16 spacing 2^-7 there)
        assert (InstanceNorm(6)(xb).float() - torch.nn.InstanceNorm2d(6)(x)).abs().max() < 0.05
        assert ours(xb).dtype == torch.bfloat16


def test_a_model_saved_before_the_layer_swap_loads_and_translates_the_same(monkeypatch):
    """Models trained with torch's own padding and norm layers (earlier versions) load strictly into
    the current networks and translate to the same images, also in channels-last."""
    import functools

    from vdwstack.drit import networks

    monkeypatch.setattr(networks, "ReflectionPad", torch.nn.ReflectionPad2d)
    monkeypatch.setattr(networks, "ReflectConv2d", functools.partial(torch.nn.Conv2d, padding_mode="reflect"))
    monkeypatch.setattr(networks, "InstanceNorm", torch.nn.InstanceNorm2d)
    torch.manual_seed(0)
    old = networks.Drit(ARCH).eval()
    monkeypatch.undo()
    new = networks.Drit(ARCH).eval()
    assert any(type(m) is torch.nn.ReflectionPad2d for m in old.modules())
    assert not any(type(m) is torch.nn.ReflectionPad2d for m in new.modules())
    new.load_state_dict(old.state_dict(), strict=True)
    x, style = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    expected = old.translate(x, style=style)
    assert torch.allclose(new.translate(x, style=style), expected, atol=1e-5)
    new = new.to(memory_format=torch.channels_last)  # the layout the bf16 training uses
    cl = new.translate(x.contiguous(memory_format=torch.channels_last), style=style)
    assert torch.allclose(cl, expected, atol=1e-4)


def test_save_load_identical_and_refuses_pickles(tmp_path):
    m = Drit(ARCH).eval()
    export_translator(m, tmp_path, {"input": {"pixel_size_A": 0.1}})
    tr, card = load_translator(tmp_path)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    z = torch.randn(2, ARCH.nz)
    assert torch.equal(m.translate(x, z=z), tr.translate(x, z=z))
    assert card["architecture"]["nf"] == ARCH.nf

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(ValueError, match="evil.pt: refused to load"):
        load_weights_only(bad)


def test_resume_continues_from_checkpoint(tmp_path):
    cfg = DritConfig(iterations=6, crop_px=32, batch_size=1, checkpoint_every=3, sample_every=100, architecture=ARCH)
    sampler = _sampler()
    t1 = train(sampler, cfg, tmp_path / "a", 0.1, progress=False, stop_after=3)  # "interrupted" after 3
    assert t1.iteration == 3 and (tmp_path / "a" / "checkpoints" / "last.pt").exists()
    t2 = train(sampler, cfg, tmp_path / "a", 0.1, progress=False)
    assert t2.iteration == 6
    # Same result as an uninterrupted run (same data stream and RNG state).
    t3 = train(sampler, cfg, tmp_path / "b", 0.1, progress=False)
    for (k, v2), v3 in zip(t2.model.state_dict().items(), t3.model.state_dict().values()):
        assert torch.allclose(v2.float(), v3.float(), atol=1e-5), k
    lines = (tmp_path / "a" / "losses.csv").read_text().splitlines()
    assert lines[0].startswith("iteration") and len(lines) == 7


def test_checkpoints_resume_only_the_same_config_iteration_count_included(tmp_path):
    """A checkpoint is resumed only by the config that made it: another iteration count starts
    afresh (the learning-rate decay spans the run), checkpoint and sample cadence do not matter."""
    from types import SimpleNamespace

    from vdwstack.drit.stage import _fingerprint

    root = SimpleNamespace(attrs={"config_hash": "abc"})
    base = DritConfig(iterations=300, lr_decay_start=150, architecture=ARCH)

    def fp(**kw):
        return _fingerprint(tmp_path / "sim.zarr", root, [], DritConfig(**{**base.to_dict(), **kw}))

    assert fp() == fp(checkpoint_every=7, sample_every=9)
    assert fp() != fp(iterations=160) and fp() != fp(lr_decay_start=80)


def test_random_crop_rotates_inside_the_image():
    img = _lattice(128)
    rng = np.random.default_rng(0)
    crops = [random_crop(img, 48, rng, rotate=True, scale_jitter=0.1) for _ in range(5)]
    assert all(c.shape == (48, 48) and np.isfinite(c).all() for c in crops)
    with pytest.raises(ValueError, match="smaller than a 200 px crop"):
        random_crop(img, 200, rng)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="drit.crop_px"):
        DritConfig.from_mapping({"crop_px": 30})
    with pytest.raises(ValueError, match="unknown setting"):
        DritConfig.from_mapping({"iters": 3})


def test_deterministic_setting_trains_bit_identical_weights(tmp_path):
    """drit.deterministic is a real setting: accepted by the config, and two runs with the same seed
    give bit-identical weights (it used to pass validation and then fail the job)."""
    cfg = DritConfig.from_mapping({"iterations": 3, "crop_px": 32, "batch_size": 1, "checkpoint_every": 100,
                                   "sample_every": 100, "deterministic": True, "device": "cpu"})
    assert cfg.deterministic is True
    runs = []
    for k in range(2):
        trainer = train(_sampler(), DritConfig(**{**vars(cfg), "architecture": ARCH}), tmp_path / str(k), 0.1,
                        progress=False)
        runs.append({n: p.detach().clone() for n, p in trainer.model.state_dict().items()})
    torch.use_deterministic_algorithms(False)
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
