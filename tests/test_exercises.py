"""implement_yourself: while a graded test runs, the package's (or PyTorch's) implementation of the piece an
exercise asks for raises, by whatever name the student reached it, and everything is put back afterwards."""

import pytest
import torch
import torch.nn.functional as F

import roberta_from_scratch.tokenizer as tokenizer_module
from roberta_from_scratch.attention import MultiHeadSelfAttention
from roberta_from_scratch.exercises import ImplementYourself, implement_yourself
from roberta_from_scratch.tokenizer import bytes_to_unicode

TABLE = "roberta_from_scratch.tokenizer.bytes_to_unicode"


def test_a_function_is_refused_by_every_name_and_restored():
    """Catches: a shortcut through an alias (`from ... import name`) that the patch of the module misses."""
    import roberta_from_scratch.masking as elsewhere  # another package module

    elsewhere.borrowed = bytes_to_unicode
    try:
        with implement_yourself(TABLE):
            with pytest.raises(ImplementYourself, match="implement it yourself"):
                tokenizer_module.bytes_to_unicode()
            with pytest.raises(ImplementYourself):
                elsewhere.borrowed()
        assert tokenizer_module.bytes_to_unicode is bytes_to_unicode is elsewhere.borrowed
        assert len(bytes_to_unicode()) == 256
    finally:
        del elsewhere.borrowed


def test_names_in_main_are_refused(monkeypatch):
    """Catches: a notebook that imported the function into its namespace before the test ran."""
    import sys
    import types

    main = types.ModuleType("__main__")
    main.shortcut = bytes_to_unicode
    monkeypatch.setitem(sys.modules, "__main__", main)
    with implement_yourself(TABLE):
        with pytest.raises(ImplementYourself):
            main.shortcut()
    assert main.shortcut is bytes_to_unicode


def test_methods_and_torch_functions_are_refused_and_restored():
    """Catches: a solution that calls the package's class method or PyTorch's fused kernel."""
    layer = MultiHeadSelfAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with implement_yourself("roberta_from_scratch.attention.MultiHeadSelfAttention.split_heads",
                            "torch.nn.functional.scaled_dot_product_attention"):
        with pytest.raises(ImplementYourself):
            layer.split_heads(x)
        with pytest.raises(ImplementYourself):
            F.scaled_dot_product_attention(x, x, x)
    assert layer.split_heads(x).shape == (1, 2, 3, 4) and F.scaled_dot_product_attention(x, x, x).shape == x.shape


def test_inherited_method_is_restored_to_the_parent():
    """Catches: the restore step leaving a copy of the parent's method on the subclass (or the refusal itself)."""
    had = "zero_grad" in vars(torch.optim.AdamW)
    with implement_yourself("torch.optim.AdamW.zero_grad"):
        with pytest.raises(ImplementYourself):
            torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).zero_grad()
    assert ("zero_grad" in vars(torch.optim.AdamW)) == had
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).zero_grad()


def test_restored_after_an_error_and_bad_target():
    """Catches: a failing test cell leaving the package broken for the cells after it."""
    with pytest.raises(KeyError):
        with implement_yourself(TABLE):
            raise KeyError("the student's code failed")
    assert len(tokenizer_module.bytes_to_unicode()) == 256
    with pytest.raises(ValueError, match="cannot import"):
        with implement_yourself("no_such_module.function"):
            pass
