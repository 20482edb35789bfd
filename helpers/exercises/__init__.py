"""Checkers for the notebooks' exercises: one module per notebook (``nb01``, ``nb02``, ...).

Each ``check_*`` function takes the learner's answer and raises ``AssertionError`` with a hint when it is
wrong, so the checking cell fails (and nbval fails CI) on a wrong solution.
"""
