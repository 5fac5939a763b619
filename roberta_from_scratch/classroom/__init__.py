"""For instructors: the exercises the notebooks mark, the student versions built from them, and the grader that
runs a submission in a confined kernel (README, "For instructors")."""
