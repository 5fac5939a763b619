"""The device audit (roberta_from_scratch.device_audit): each rule raises where CUDA raises, and code that runs on
CUDA runs under it. Every test enters the audit with ``device_audit.audited()`` and leaves it, so the rest of the
test session runs without it; one test starts a process with ``RFS_DEVICE=audit`` as the notebooks do."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from roberta_from_scratch import device_audit
from roberta_from_scratch.device_audit import audited, is_marked
from roberta_from_scratch.device_audit import AUDIT_DEVICE

MIXED = "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"
NUMPY = "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."


class Tiny(torch.nn.Module):
    """Embedding, a position table, layer norm with a buffer, and a head: the parts of the course's model that
    moving touches."""

    def __init__(self, vocab=11, width=8, positions=10):
        super().__init__()
        self.tokens = torch.nn.Embedding(vocab, width)
        self.positions = torch.nn.Embedding(positions, width)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab)
        self.register_buffer("position_ids", torch.arange(positions))

    def forward(self, ids):
        positions = self.position_ids[: ids.shape[1]]
        return self.head(self.norm(self.tokens(ids) + self.positions(positions)))


def test_moving_a_model_marks_it_in_place_and_the_host_copy_stays_host():
    model = Tiny()
    weight = model.tokens.weight
    with audited() as device:
        assert device == AUDIT_DEVICE
        assert model.to(device) is model
        assert model.tokens.weight is weight  # in place, as CUDA moves a module
        assert all(is_marked(p) and p.device == device for p in model.parameters())
        assert all(is_marked(b) and b.device == device for b in model.buffers())

        host = torch.randn(3, 4)
        moved = host.to(device)
        assert is_marked(moved) and not is_marked(host) and host.device == torch.device("cpu")
        assert moved.to(device) is moved and moved.to("cpu:0") is moved  # already there: no copy, as on CUDA
        for back in (moved.cpu(), moved.to("cpu"), moved.to(torch.device("cpu")), moved.to(host)):
            assert not is_marked(back) and back.device == torch.device("cpu")
            assert back.data_ptr() != moved.data_ptr()  # a copy: writing into it leaves the device tensor alone
        assert is_marked(host.to(moved)) and is_marked(host.type_as(moved)) and is_marked(host.cuda())
        assert is_marked(moved.to(torch.float16)) and is_marked(moved.double())  # a dtype change stays put

        model.to("cpu")
        assert model.tokens.weight is weight and not any(is_marked(p) for p in model.parameters())


def test_device_reports_the_audit_device_and_factories_follow_it():
    with audited() as device:
        x = torch.randn(2, 3).to(device)
        assert x.device == device and x.device != torch.device("cpu")
        for made in (torch.arange(4, device=x.device), torch.zeros(2, device=device), torch.tensor([1, 2], device="cpu:0"),
                     torch.randn(2, device=device), torch.zeros_like(torch.ones(2), device=device),
                     torch.empty_like(x), x.new_zeros(3), x.new_tensor([1.0]), torch.full_like(x, 2.0)):
            assert is_marked(made), made
        for made in (torch.zeros(2, device="cpu"), torch.zeros_like(x, device="cpu"), x.new_zeros(3, device="cpu")):
            assert not is_marked(made) and made.device == torch.device("cpu")
        assert is_marked(torch.nn.Linear(2, 2, device=device).weight)  # a Parameter made on the device
        assert is_marked(torch.nn.Parameter(x))


def test_mixing_device_and_host_tensors_raises_cudas_error():
    model = Tiny()
    with audited() as device:
        model.to(device)
        ids = torch.randint(0, 11, (2, 5))
        with pytest.raises(RuntimeError, match="same device") as caught:
            model(ids)  # the inputs were not moved
        message = str(caught.value)
        assert message.startswith(MIXED) and "RFS_DEVICE=audit" in message and ".to(device)" in message
        x, host = torch.randn(3, 4).to(device), torch.randn(3, 4)
        # each raises before computing anything: torch.equal here asks for no exactness, only for the same device
        for mixed in (lambda: x + host, lambda: host * x, lambda: torch.cat([x, host]), lambda: x @ host.T,
                      lambda: F.embedding(torch.tensor([1, 2]), x), lambda: torch.equal(x, host),
                      lambda: F.cross_entropy(x, torch.tensor([0, 1, 2])), lambda: host.add_(x)):
            with pytest.raises(RuntimeError, match=MIXED[:40]):
                mixed()
        assert model(ids.to(device)).device == device


def test_zero_dim_host_tensors_and_host_indices_mix_with_device_tensors_as_on_cuda():
    with audited() as device:
        x, host = torch.randn(4, 3).to(device), torch.randn(4, 3)
        scale = torch.tensor(2.0)  # 0-dim: CUDA takes a CPU scalar tensor in an elementwise op
        assert is_marked(x * scale) and is_marked(torch.where(x > 0, x, scale))
        assert is_marked(x[torch.tensor([0, 2])]) and is_marked(x[torch.tensor([True, False, True, False])])
        x[torch.tensor([1])] = torch.zeros(3)  # host indices and a host value written into a device tensor
        x[0] = host[0]
        assert is_marked(x)
        with pytest.raises(RuntimeError, match="indices should be either on cpu or on the same device"):
            host[torch.tensor([0, 2]).to(device)]  # a host tensor indexed with device indices
        assert not is_marked(host[torch.tensor(1).to(device)])  # a 0-dim integer index is read as a number
        with pytest.raises(RuntimeError, match=MIXED[:40]):
            torch.index_select(x, 0, torch.tensor([0]))  # index_select wants its index on the device


def test_in_place_operations_keep_the_mark_of_the_tensor_they_write():
    with audited() as device:
        x, host = torch.randn(3).to(device), torch.randn(3)
        assert x.add_(1).mul_(torch.tensor(0.5)) is x and is_marked(x)
        host.copy_(x)  # copy_ copies across devices; the destination stays where it is
        x.copy_(host)
        assert not is_marked(host) and is_marked(x)
        rows = list(torch.randn(2, 3).to(device))  # iterating a device tensor gives device rows
        assert all(is_marked(r) for r in rows) and all(is_marked(p) for p in x.split(1))


def test_numpy_of_a_device_tensor_raises_and_reading_numbers_is_allowed():
    with audited() as device:
        x = torch.randn(2, 3).to(device)
        for convert in (x.numpy, lambda: np.asarray(x), lambda: np.array(x)):
            with pytest.raises(TypeError) as caught:
                convert()
            assert str(caught.value).startswith(NUMPY) and ".cpu()" in str(caught.value)
        assert np.asarray(x.cpu()).shape == (2, 3) and np.asarray(x.detach().cpu().numpy()).shape == (2, 3)
        total = x.sum()
        assert isinstance(total.item(), float) and float(total) == total.item() and int(x[0, 0] * 0) == 0
        assert len(x.tolist()) == 2 and f"{total:.2f}"  # CUDA copies a number back for these


def test_a_cpu_generator_cannot_sample_a_device_tensor():
    gen = torch.Generator().manual_seed(0)
    with audited() as device:
        x = torch.rand(4).to(device)
        for sample in (lambda: torch.randn(3, device=device, generator=gen),
                       lambda: torch.bernoulli(x, generator=gen),
                       lambda: torch.multinomial(x, 2, generator=gen),
                       lambda: torch.nn.init.normal_(x, generator=gen)):
            with pytest.raises(RuntimeError, match="Expected a 'cuda' device type for generator but found 'cpu'"):
                sample()
        drawn = torch.bernoulli(x.cpu(), generator=gen).to(device)  # the portable way: sample on the host, move
        assert is_marked(drawn) and is_marked(torch.bernoulli(x))  # the device's own generator is fine


def test_code_that_runs_on_cuda_runs_under_the_audit(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = Tiny()
    with audited() as device:
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        ids = torch.randint(0, 11, (4, 6))
        losses = []
        for _ in range(3):
            batch = ids.to(device)
            logits = model(batch)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), batch.view(-1))
            loss.backward()
            assert is_marked(model.head.weight.grad)  # gradients live with their parameters
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        assert all(is_marked(v) for v in optimizer.state[model.head.weight].values() if v.dim() > 0)

        fig, ax = plt.subplots()
        ax.imshow(model.positions.weight.detach().cpu())
        ax.plot(torch.tensor(losses))  # host numbers
        plt.close(fig)

        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp_path / "model.safetensors")  # safetensors reads the moved tensors' memory directly
        loaded = load_file(tmp_path / "model.safetensors")
        # exact: a save and load round trip of the same float32 values
        torch.testing.assert_close(loaded["head.weight"], model.head.weight.detach().cpu(), rtol=0, atol=0)
        with pytest.raises(AssertionError, match="device"):  # assert_close's device check, as on CUDA
            torch.testing.assert_close(loaded["head.weight"], model.head.weight.detach())
        model.load_state_dict(loaded)  # copies host values into the device parameters
        assert is_marked(model.head.weight)


def test_fp16_autocast_with_a_grad_scaler_runs_on_the_device():
    torch.manual_seed(0)
    model = Tiny()
    with audited() as device:
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scaler = torch.amp.GradScaler("cpu")
        ids = torch.randint(0, 11, (4, 6)).to(device)
        with torch.autocast("cpu", dtype=torch.float16):
            logits = model(ids)
        loss = F.cross_entropy(logits.float().view(-1, 11), ids.view(-1))
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        assert is_marked(model.head.weight) and np.isfinite(scaler.get_scale())


def test_notebook_07_pattern_a_model_moved_in_place_and_plotted_without_cpu_raises():
    """Notebook 07 moved its random model to the device in place (``m.to(ENV.device)`` in a loop) and later handed
    its position table to imshow without ``.cpu()``: a TypeError on CUDA, silent on a plain CPU."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    random_model = Tiny().eval()
    with audited() as device:
        for m in [random_model]:
            m.to(device)
        table = random_model.positions.weight[2:8].detach()
        fig, ax = plt.subplots()
        try:
            with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
                unit = F.normalize(table, dim=-1)
                ax.imshow(unit @ unit.T)
            unit = F.normalize(table.cpu(), dim=-1)
            ax.imshow(unit @ unit.T)  # the fix
        finally:
            plt.close(fig)
    fig, ax = plt.subplots()
    ax.imshow(table)  # without the audit a CPU never notices
    plt.close(fig)


def test_a_tensor_method_patched_outside_torch_runs_once_per_call(monkeypatch):
    """Notebook 08 counts value reads by replacing ``torch.Tensor.item``; torch hands a mode the replacement, and
    calling it again would count every read twice under the audit."""
    calls = []
    original = torch.Tensor.item

    def counted(tensor, *args, **kwargs):
        calls.append(tensor)
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "item", counted)
    with audited() as device:
        x = torch.ones(()).to(device)
        assert x.item() == 1.0 and torch.ones(()).item() == 1.0
    assert len(calls) == 2


def test_leaving_the_audit_restores_torch():
    new = torch.nn.Parameter.__dict__["__new__"]
    assert not device_audit.active()
    with audited() as device:
        assert device_audit.active()
        x = torch.ones(2).to(device)
        with audited():  # nested: nothing changes
            assert is_marked(x)
        assert is_marked(x)
    assert not device_audit.active() and not is_marked(x) and x.device == torch.device("cpu")
    assert torch.nn.Parameter.__dict__["__new__"] is new
    assert np.asarray(x).shape == (2,)


def test_without_marks_results_are_the_plain_cpu_results():
    torch.manual_seed(0)
    model, ids = Tiny(), torch.randint(0, 11, (2, 5))
    expected = model(ids)
    with audited():
        got = model(ids)  # nothing moved: the fast path, the same kernels on the same inputs
    assert not is_marked(got)
    assert torch.equal(got, expected)  # exact: the same kernels on the same inputs; the mode only forwards


def test_rfs_device_audit_activates_once_for_the_process():
    code = (
        "import numpy as np, torch\n"
        "from torch.overrides import _get_current_function_mode_stack as stack\n"
        "from roberta_from_scratch import device_audit\n"
        "from roberta_from_scratch.settings import pick_device\nfrom roberta_from_scratch.device_audit import AUDIT_DEVICE\n"
        "assert pick_device() == AUDIT_DEVICE and pick_device() == AUDIT_DEVICE\n"
        "device_audit.activate()\n"
        "assert sum(isinstance(m, device_audit.AuditMode) for m in stack()) == 1, stack()\n"
        "x = torch.ones(2).to(pick_device())\n"
        "try:\n"
        "    np.asarray(x)\n"
        "except TypeError as e:\n"
        "    print('raised:', e)\n"
    )
    env = dict(os.environ, RFS_DEVICE="audit")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "raised: can't convert cuda:0 device type tensor to numpy" in done.stdout
