"""The closed forms of docs/theory.md: task sets (:mod:`.tasks`), inner-loop operators
(:mod:`.inner_loop`), kernel linear algebra (:mod:`.linalg`), the MTL and GBML predictors
(:mod:`.predictors`) and the distances between them (:mod:`.distances`). Built on :mod:`ntk_bridge.engine`.
"""
