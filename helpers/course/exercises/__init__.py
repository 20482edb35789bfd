"""The notebooks' exercises: one module per notebook (``nb01`` for notebook 01 ... ``nb06``), built on :mod:`.base`.

Each module holds the reference solutions (``nbNN.show_solution(K)`` prints one) and the checkers the notebook's
checking cells call: a stub reports "exercise K not attempted yet", a wrong answer raises ``AssertionError``
naming the mistake, a right one prints "exercise K passed". The convention is in docs/NOTEBOOKS.md.
"""
