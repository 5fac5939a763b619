"""implement_yourself: while a graded test runs, a call of the package's (or PyTorch's) implementation of the piece
an exercise asks for is recorded, by whatever name the student reached it, and fails the test when it ends (saying
whether the tests passed with it); everything is put back afterwards."""

import pytest
import torch
import torch.nn.functional as F

import roberta_from_scratch.tokenizer as tokenizer_module
from roberta_from_scratch.attention import MultiHeadSelfAttention
from roberta_from_scratch.classroom.exercises import ImplementYourself, implement_yourself
from roberta_from_scratch.tokenizer import bytes_to_unicode

TABLE = "roberta_from_scratch.tokenizer.bytes_to_unicode"


def test_a_function_is_refused_by_every_name_and_restored():
    """Catches: a shortcut through an alias (`from ... import name`) that the patch of the module misses."""
    import roberta_from_scratch.masking as elsewhere  # another package module

    elsewhere.borrowed = bytes_to_unicode
    try:
        for call in (lambda: tokenizer_module.bytes_to_unicode(), lambda: elsewhere.borrowed()):
            with pytest.raises(ImplementYourself, match=rf"the tests passed, but with a call of {TABLE}, which this "
                                                        "exercise asks you to write: implement it yourself"):
                with implement_yourself(TABLE):
                    assert len(call()) == 256  # the original still runs: the test goes on to its end
        assert tokenizer_module.bytes_to_unicode is bytes_to_unicode is elsewhere.borrowed
        assert len(bytes_to_unicode()) == 256
        with implement_yourself(TABLE):
            pass  # no call: nothing is raised
    finally:
        del elsewhere.borrowed


def test_a_failing_test_after_a_forbidden_call_says_both():
    """Catches: a shortcut that also fails the tests reported as a plain AssertionError (the rule must still be
    named), and an AssertionError without any forbidden call turned into ImplementYourself."""
    with pytest.raises(ImplementYourself, match=rf"the tests failed \(AssertionError: wrong\), and they called {TABLE}") as info:
        with implement_yourself(TABLE):
            tokenizer_module.bytes_to_unicode()
            raise AssertionError("wrong")
    assert isinstance(info.value.__cause__, AssertionError)
    with pytest.raises(AssertionError, match="wrong"):
        with implement_yourself(TABLE):
            raise AssertionError("wrong")


def test_names_in_main_are_refused(monkeypatch):
    """Catches: a notebook that imported the function into its namespace before the test ran."""
    import sys
    import types

    main = types.ModuleType("__main__")
    main.shortcut = bytes_to_unicode
    monkeypatch.setitem(sys.modules, "__main__", main)
    with pytest.raises(ImplementYourself):
        with implement_yourself(TABLE):
            main.shortcut()
    assert main.shortcut is bytes_to_unicode


def test_a_lesson_name_that_was_never_defined_is_skipped(monkeypatch):
    """Catches: an exercise's test that breaks (AttributeError) when the lesson cell defining one of its forbidden
    names did not run (a kernel that ran only the exercise, or the student version, where that cell is replaced),
    while a lesson name that is defined is still refused."""
    import sys
    import types

    main = types.ModuleType("__main__")
    main.lesson_table = bytes_to_unicode
    monkeypatch.setitem(sys.modules, "__main__", main)
    with implement_yourself("__main__.never_defined", TABLE):  # no error for the missing name
        pass
    with pytest.raises(ImplementYourself, match="lesson_table"):
        with implement_yourself("__main__.never_defined", "__main__.lesson_table"):
            main.lesson_table()


def test_methods_and_torch_functions_are_refused_and_restored():
    """Catches: a solution that calls the package's class method or PyTorch's fused kernel."""
    layer = MultiHeadSelfAttention(8, 2)
    x = torch.randn(1, 3, 8)
    targets = ("roberta_from_scratch.attention.MultiHeadSelfAttention.split_heads",
               "torch.nn.functional.scaled_dot_product_attention")
    for call, target in [(lambda: layer.split_heads(x), targets[0]),
                         (lambda: F.scaled_dot_product_attention(x, x, x), targets[1])]:
        with pytest.raises(ImplementYourself, match=target):
            with implement_yourself(*targets):
                call()
    assert layer.split_heads(x).shape == (1, 2, 3, 4) and F.scaled_dot_product_attention(x, x, x).shape == x.shape


def test_class_and_static_methods_keep_their_kind():
    """Catches: a stand-in that turns a classmethod or staticmethod into an instance method, so that the original
    gets the wrong first argument when called through an instance."""
    class Tool:
        @staticmethod
        def double(x):
            return 2 * x

        @classmethod
        def name(cls):
            return cls.__name__

    import sys

    module = sys.modules[__name__]
    module.Tool = Tool
    try:
        for call in (lambda: Tool().double(3), lambda: Tool.double(3)):
            with pytest.raises(ImplementYourself):
                with implement_yourself(f"{__name__}.Tool.double"):
                    assert call() == 6
        with pytest.raises(ImplementYourself):
            with implement_yourself(f"{__name__}.Tool.name"):
                assert Tool().name() == "Tool" and Tool.name() == "Tool"
        assert isinstance(vars(Tool)["double"], staticmethod) and isinstance(vars(Tool)["name"], classmethod)
    finally:
        del module.Tool


def test_inherited_method_is_restored_to_the_parent():
    """Catches: the restore step leaving a copy of the parent's method on the subclass (or the stand-in itself)."""
    had = "zero_grad" in vars(torch.optim.AdamW)
    with pytest.raises(ImplementYourself):
        with implement_yourself("torch.optim.AdamW.zero_grad"):
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
