"""Plain nn.Modules (no Lightning here). Every model takes the same constructor arguments:

    in_shape, num_classes, norm_layer, activation, dropout, lrn

`norm_layer` comes from `bnbench.nn.norm.create_norm`; `dropout` and `lrn` come from the
resolved recipe (`bnbench.recipe`), where the paper's modifications are applied. A model that
has an activation worth probing exposes it as `probe_point` (a module whose output is the
input to the last hidden nonlinearity).
"""
