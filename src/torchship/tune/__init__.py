"""`torchship tune`: measure serving configurations in a real TorchServe and pick the fastest that meets
a p95 budget. plan (the grid), variant (a .mar per configuration), sweep (the measurements), choose (the
pick), records (typed results), chart (tune.html), spec_edit (--write)."""
