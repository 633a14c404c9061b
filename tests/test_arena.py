"""The CPU provider's buffer arena: a buffer is handed out again only when nothing else holds it.

The arena reads "nothing else holds it" off reference counts; these tests hold buffers in
every way the engine and a user do (a variable, a view, a tensor, a gradient, a graph)
and check that such a buffer is never handed out twice, and that training with the arena
gives exactly the numbers it gives without.
"""

from __future__ import annotations

import numpy as np
import pytest

import minivae as mv
from minivae.providers.arena import Arena

F32 = np.dtype(np.float32)


def test_a_free_buffer_is_reused_and_a_held_one_is_not():
    arena = Arena(min_bytes=0)
    a = arena.empty((8, 8), F32)
    b = arena.empty((8, 8), F32)
    assert a is not b
    assert a.flags.c_contiguous and a.shape == (8, 8) and a.dtype == F32 and a.base is None
    address = a.ctypes.data
    del a
    c = arena.empty((8, 8), F32)
    assert c.ctypes.data == address  # the freed one came back
    assert c is not b
    assert arena.empty((8, 8), F32) is not c  # c is held by this test


def test_a_view_or_a_tensor_keeps_its_buffer_busy():
    arena = Arena(min_bytes=0)
    a = arena.empty((4, 5), F32)
    view = a[1:, ::2]
    t = mv.tensor(arena.empty((4, 5), F32))  # a Tensor wraps the very buffer (float32 already)
    held = {a.ctypes.data, t.data.ctypes.data}
    del a
    for _ in range(3):
        assert arena.empty((4, 5), F32).ctypes.data not in held
        fresh = [arena.empty((4, 5), F32) for _ in range(2)]
        assert not {f.ctypes.data for f in fresh} & held
    del view  # now the first buffer is free again
    again = [arena.empty((4, 5), F32) for _ in range(3)]
    assert any(x.ctypes.data in held for x in again)


def test_small_arrays_shapes_and_dtypes_are_kept_apart():
    arena = Arena(min_bytes=1024)
    small = arena.empty((2, 2), F32)
    assert arena.kept_bytes() == 0 and small.shape == (2, 2)
    x = arena.empty((16, 16), F32)
    del x
    assert arena.empty((16, 16), np.dtype(np.float64)).dtype == np.float64  # another key: a new buffer
    assert arena.empty((256,), F32).shape == (256,)


def test_limits_and_switching_off():
    arena = Arena(min_bytes=0, max_bytes=1000, per_shape=2)
    held = [arena.empty((10, 10), F32) for _ in range(4)]  # 400 bytes each: only 2 are kept
    assert arena.kept_bytes() == 800
    del held
    arena.clear()
    assert arena.kept_bytes() == 0
    arena.enabled = False
    a = arena.empty((10, 10), F32)
    del a
    assert arena.kept_bytes() == 0


def test_arena_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("MINIVAE_ARENA", "0")
    assert not Arena().enabled
    monkeypatch.setenv("MINIVAE_ARENA", "1")
    assert Arena().enabled


def _train(steps: int, batch: int = 64):
    rng = mv.random.Generator(5)
    enc = mv.nn.Linear(300, 200, rng=rng)
    heads = mv.nn.Linear(200, 8, rng=rng)
    dec = mv.nn.Sequential(mv.nn.Linear(4, 200, rng=rng), mv.nn.ReLU(), mv.nn.Linear(200, 300, rng=rng))
    params = enc.parameters() + heads.parameters() + dec.parameters()
    opt = mv.optim.Adam(params, lr=1e-2)
    x = mv.tensor(np.random.default_rng(0).random((batch, 300), dtype=np.float32))
    kept, losses = [], []
    for _ in range(steps):
        h = heads(mv.relu(enc(x)))
        q = mv.Normal(h[:, :4], h[:, 4:])
        logits = dec(q.rsample(rng=rng))
        loss = (mv.losses.bce_with_logits(logits, x, reduction="sum") + q.kl_standard().sum()) / batch
        kept.append((logits, logits.data.copy()))  # a user holding a tensor of every step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.numpy().copy() for p in params], kept


def test_training_with_the_arena_gives_the_same_numbers_and_leaves_held_tensors_alone():
    from minivae.providers import arena as arena_module

    with mv.use_kernels("custom"):
        before = arena_module.ARENA.enabled
        try:
            arena_module.ARENA.enabled = False
            want_losses, want_params, _ = _train(4)
            arena_module.ARENA.enabled = True
            got_losses, got_params, kept = _train(4)
        finally:
            arena_module.ARENA.enabled = before
    assert got_losses == want_losses
    for got, want in zip(got_params, want_params):
        np.testing.assert_array_equal(got, want)
    for tensor, values in kept:  # later steps did not write into buffers a user still holds
        np.testing.assert_array_equal(tensor.data, values)


@pytest.mark.parametrize("batch", [1, 700])
def test_arena_buffers_of_the_provider_are_not_shared_by_live_results(batch):
    """Products and activations made back to back while all are alive are distinct buffers."""
    from minivae.providers import provider_for

    with mv.use_kernels("custom"):
        a = np.random.default_rng(1).random((batch, 300), dtype=np.float32)
        w = np.random.default_rng(2).random((300, 200), dtype=np.float32)
        p = provider_for(a)
        outs = [p.matmul(a, w) for _ in range(3)]
        outs += [p.activation("relu", outs[0], 0.0) for _ in range(2)]
        assert len({o.ctypes.data for o in outs}) == len(outs)
        np.testing.assert_allclose(outs[1], a @ w, rtol=1e-5)
