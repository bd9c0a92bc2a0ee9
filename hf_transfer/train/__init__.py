"""Training: the one loop every strategy runs (`loop`), and its parts, each in a module named for it: `plan` (what
a strategy hands the loop, the loop's state, its result, callbacks), `optim`, `loading`, `evaluation`,
`checkpointing` and `tracking`.

Nothing is re-exported here: importing one part (a strategy needs only `plan` and `optim`; `predict` only
`evaluation`) then loads only what that part imports, and every name has one import path.
"""
