"""The course's machinery, not a lesson: the artifacts later notebooks reuse (the tokenizer, the pretrained
models, and the pretraining run that makes them), the experiments with their cached results, the figures, and the
notebooks' map, badges and setup cells."""
