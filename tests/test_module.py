"""The maths in mixvi.module, without AnnData."""

import math

import pytest
import torch
from scvi import REGISTRY_KEYS
from torch.distributions import Normal, kl_divergence

from mixvi.module import AEModule, LikelihoodHead, VAEModule


def _tensors(x, n_batch=1):
    n = x.shape[0]
    return {
        REGISTRY_KEYS.X_KEY: x,
        REGISTRY_KEYS.BATCH_KEY: torch.randint(0, n_batch, (n, 1)),
    }


@pytest.mark.parametrize("likelihood", ["normal", "bernoulli", "nb", "zinb", "poisson"])
def test_loss_is_reconstruction_plus_kl(likelihood):
    torch.manual_seed(0)
    x = (
        torch.rand(16, 12)
        if likelihood in ("normal", "bernoulli")
        else torch.poisson(torch.full((16, 12), 3.0))
    )
    module = VAEModule(12, n_latent=3, likelihood=likelihood)
    inf, gen, out = module(_tensors(x), loss_kwargs={"kl_weight": 0.5})
    rec = out.reconstruction_loss["reconstruction_loss"]
    kl = out.kl_local["kl_local"]
    assert rec.shape == (16,) and kl.shape == (16,)
    assert torch.isfinite(out.loss)
    # summed over features, averaged over cells
    expected_rec = -gen["px"].log_prob(x).sum(-1)
    torch.testing.assert_close(rec, expected_rec)
    torch.testing.assert_close(out.loss, (rec + 0.5 * kl).mean())
    # analytic KL to N(0, I)
    qz = inf["qz"]
    torch.testing.assert_close(kl, kl_divergence(qz, Normal(0.0, 1.0)).sum(-1))


def test_log_variance_head_gives_positive_variance():
    module = VAEModule(5, n_latent=2)
    with torch.no_grad():
        module.encoder.log_var.fc_layers[0][0].bias.fill_(-3.0)
        module.encoder.log_var.fc_layers[0][0].weight.zero_()
    qz = module.inference(torch.randn(4, 5), torch.zeros(4, 1, dtype=torch.long))["qz"]
    torch.testing.assert_close(qz.scale**2, torch.full_like(qz.scale, math.exp(-3.0) + 1e-4))


def test_monte_carlo_samples_average_reconstruction():
    torch.manual_seed(0)
    module = VAEModule(6, n_latent=2, n_samples=7)
    module.eval()
    x = torch.randn(5, 6)
    inf, gen, out = module(_tensors(x))
    assert inf["z"].shape == (7, 5, 2)
    per_draw = -gen["px"].log_prob(x).sum(-1)  # (7, 5)
    assert per_draw.shape == (7, 5)
    torch.testing.assert_close(out.reconstruction_loss["reconstruction_loss"], per_draw.mean(0))


def test_more_samples_reduce_elbo_spread():
    torch.manual_seed(0)
    module = VAEModule(8, n_latent=2)
    module.eval()
    x = torch.randn(1, 8)

    def estimates(k):
        return torch.stack(
            [module(_tensors(x), inference_kwargs={"n_samples": k})[2].loss for _ in range(200)]
        )

    assert estimates(16).std() < 0.5 * estimates(1).std()


def test_marginal_ll_is_tighter_than_elbo():
    torch.manual_seed(0)
    module = VAEModule(8, n_latent=2)
    module.eval()
    x = torch.randn(32, 8)
    with torch.no_grad():
        elbo = -module(_tensors(x))[2].loss
    ll = module.marginal_ll(_tensors(x), n_mc_samples=200, return_mean=True)
    assert ll >= elbo.item() - 0.5


@pytest.mark.parametrize("likelihood", ["nb", "zinb", "poisson"])
def test_all_zero_cells_give_finite_loss_and_gradients(likelihood):
    x = torch.zeros(4, 10)
    x[0, 0] = 3.0
    module = VAEModule(10, n_latent=2, likelihood=likelihood)
    loss = module(_tensors(x))[2].loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_bernoulli_accepts_grey_levels():
    head = LikelihoodHead("bernoulli", 3, 4)
    px = head(torch.randn(2, 3), None)
    x = torch.tensor([[0.0, 0.3, 0.7, 1.0], [1.0, 0.5, 0.5, 0.0]])
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(px.logits, x, reduction="none")
    torch.testing.assert_close(px.log_prob(x), expected)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="Unknown likelihood 'gaussian'"):
        VAEModule(4, likelihood="gaussian")


def test_linear_autoencoder_has_no_hidden_layer():
    module = AEModule(7, n_latent=2, n_layers=0)
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(2, 7), (7, 2)]
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.BatchNorm1d)) for m in module.modules())


def test_conditions_enter_encoder_and_decoder_one_hot():
    module = VAEModule(5, n_latent=2, n_batch=3, n_layers=1, n_hidden=8)
    first_enc = module.encoder.body.fc.fc_layers[0][0]
    first_dec = module.decoder.fc.fc_layers[0][0]
    assert first_enc.in_features == 5 + 3
    assert first_dec.in_features == 2 + 3


@pytest.mark.parametrize("likelihood", ["normal", "nb"])
def test_input_dropout_masks_the_encoder_input_only_while_training(likelihood):
    torch.manual_seed(0)
    module = VAEModule(200, likelihood=likelihood, input_dropout_rate=0.3)
    x = torch.rand(64, 200) * 5 + 1  # no zeros, so every zero below is a mask
    if likelihood == "nb":
        x = x.round()
    module.train()
    x_in, library = module._encoder_input(x)
    masked = (x_in == 0).float().mean().item()
    assert 0.25 < masked < 0.35
    clean = torch.log1p(x) if likelihood == "nb" else x
    kept = x_in != 0
    torch.testing.assert_close(x_in[kept], clean[kept])  # kept features are not rescaled
    if likelihood == "nb":
        torch.testing.assert_close(
            library, x.sum(-1, keepdim=True)
        )  # library of the uncorrupted cell
    again, _ = module._encoder_input(x)
    assert not torch.equal(again, x_in)  # a new mask every step
    module.eval()
    x_eval, _ = module._encoder_input(x)
    torch.testing.assert_close(x_eval, clean)
    # the reconstruction term still scores the uncorrupted x
    module.train()
    tensors = {
        REGISTRY_KEYS.X_KEY: x,
        REGISTRY_KEYS.BATCH_KEY: torch.zeros(64, 1, dtype=torch.long),
    }
    _, gen, out = module(tensors)
    torch.testing.assert_close(
        out.reconstruction_loss["reconstruction_loss"], -gen["px"].log_prob(x).sum(-1)
    )


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_input_dropout_rate_out_of_range_is_refused(rate):
    with pytest.raises(ValueError, match="input_dropout_rate"):
        AEModule(10, input_dropout_rate=rate)
