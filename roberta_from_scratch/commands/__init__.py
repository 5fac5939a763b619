"""The command lines: ``python -m roberta_from_scratch <command>`` (``__main__.py`` lists them). Each reads its
options, checks them before any work, and calls the library."""
